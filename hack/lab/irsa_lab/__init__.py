"""The offline IRSA lab: moto as IAM, S3 and STS, an https issuer served from moto's S3, and an
STS front that validates web identity tokens the way AWS's STS does.

It lives outside ``src/`` on purpose: it is a test instrument for the whole chain, not part of
the product. The wheel, and so the webhook's image, never contains it, so neither gets moto or a
fake STS; the project's tests, ``hack/lab.sh`` and ``hack/demo.sh`` put ``hack/lab`` on the path.
"""
