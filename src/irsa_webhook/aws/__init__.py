"""Everything that talks to AWS: publishing the issuer to S3, the IAM OIDC provider, roles for
ServiceAccounts. Only the commands that need AWS import this package; the webhook (``serve``)
never does, so its image installs without boto3 (the optional extra ``aws``).

Keep this file free of imports: pure helpers in the package (such as the trust-policy rules)
must stay importable without boto3.
"""
