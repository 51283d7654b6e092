{{/*
Names. The chart name can be overridden (nameOverride) and the full name replaced (fullnameOverride);
both are cut to 63 characters because they end up in DNS names and label values.
*/}}
{{- define "irsa-webhook.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "irsa-webhook.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "irsa-webhook.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{- define "irsa-webhook.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "irsa-webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "irsa-webhook.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "irsa-webhook.labels" -}}
helm.sh/chart: {{ include "irsa-webhook.chart" . }}
{{ include "irsa-webhook.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "irsa-webhook.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "irsa-webhook.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: [registry/]repository[:tag][@digest]; the tag defaults to the chart's appVersion.
*/}}
{{- define "irsa-webhook.image" -}}
{{- $ref := .Values.image.repository }}
{{- with .Values.image.registry }}
{{- $ref = printf "%s/%s" . $ref }}
{{- end }}
{{- $ref = printf "%s:%s" $ref (default .Chart.AppVersion .Values.image.tag) }}
{{- with .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref . }}
{{- end }}
{{- $ref }}
{{- end }}

{{/*
The Secret that holds the serving certificate, mounted at /etc/webhook/certs.
*/}}
{{- define "irsa-webhook.tlsSecretName" -}}
{{- default (printf "%s-cert" (include "irsa-webhook.fullname" .)) .Values.pki.existingSecret }}
{{- end }}

{{/*
Whether the webhook runs in this cluster. With mutatingWebhook.url set, it runs somewhere else and the
chart only registers it (and creates the RBAC objects an outside process can use).
*/}}
{{- define "irsa-webhook.inCluster" -}}
{{- if not .Values.mutatingWebhook.url }}true{{ end }}
{{- end }}

{{/*
Where the serving certificate comes from. The community chart selects this with the keys below, so the
same values select the same source here:
  certManager     pki.certManager.enabled: cert-manager issues it and injects the CA into the webhook
  existingSecret  pki.existingSecret: a kubernetes.io/tls Secret you manage, CA in pki.caBundle
  manual          pki.cert + pki.key: the chart stores them in a Secret, CA in pki.caBundle
  selfManaged     none of them: the webhook keeps its own CA and certificate in a Secret and the CA in
                  the caBundle, renews them and restores a wiped caBundle (--self-managed-cert-*)
  external        mutatingWebhook.url: the webhook runs outside the cluster, CA in pki.caBundle
Asking for two sources at once is an error rather than a silent choice.
*/}}
{{- define "irsa-webhook.pkiMode" -}}
{{- $pki := .Values.pki }}
{{- $manual := or $pki.cert $pki.key }}
{{- if .Values.mutatingWebhook.url }}
{{- if not $pki.caBundle }}
{{- fail "mutatingWebhook.url is set: set pki.caBundle to the PEM CA certificate that signed the webhook's serving certificate" }}
{{- end }}
{{- if or $pki.certManager.enabled $pki.existingSecret $manual }}
{{- fail "mutatingWebhook.url is set: the webhook runs outside the chart, so leave pki.certManager.enabled, pki.existingSecret, pki.cert and pki.key unset" }}
{{- end }}
{{- print "external" }}
{{- else if $pki.certManager.enabled }}
{{- if or $pki.existingSecret $manual }}
{{- fail "pki.certManager.enabled is true: leave pki.existingSecret, pki.cert and pki.key empty (cert-manager writes the Secret)" }}
{{- end }}
{{- print "certManager" }}
{{- else if $pki.existingSecret }}
{{- if $manual }}
{{- fail "pki.existingSecret is set: leave pki.cert and pki.key empty (the certificate comes from the Secret)" }}
{{- end }}
{{- print "existingSecret" }}
{{- else if $manual }}
{{- if not (and $pki.cert $pki.key) }}
{{- fail "pki.cert and pki.key must be set together" }}
{{- end }}
{{- print "manual" }}
{{- else }}
{{- print "selfManaged" }}
{{- end }}
{{- end }}

{{/*
The Secret the webhook keeps its self-managed CA and certificate in. Not the name of the other
modes' TLS Secret: that one is of type kubernetes.io/tls, and a Secret's type cannot change.
*/}}
{{- define "irsa-webhook.selfManagedSecretName" -}}
{{- printf "%s-pki" (include "irsa-webhook.fullname" .) }}
{{- end }}

{{/*
Whether the webhook watches the pod-identity-webhook ConfigMap: when the chart renders it, or when
config.watchConfigMap says someone else (kOps, for example) does.
*/}}
{{- define "irsa-webhook.watchConfigMap" -}}
{{- if or .Values.config.watchConfigMap .Values.config.podIdentityWebhookMap.enabled }}true{{ end }}
{{- end }}

{{/*
The DNS names the API server may use to reach the webhook through its Service.
*/}}
{{- define "irsa-webhook.dnsNames" -}}
{{- $svc := include "irsa-webhook.fullname" . }}
{{- $ns := include "irsa-webhook.namespace" . }}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson }}
{{- end }}

{{/*
The name of the webhook in the registration: the reference's, so API server metrics and alerts keyed
on it keep working. The PrometheusRule selects the API server's series by it.
*/}}
{{- define "irsa-webhook.webhookName" -}}
pod-identity-webhook.amazonaws.com
{{- end }}

{{/*
The registration's namespaceSelector: the user's selector with the excluded namespaces
(mutatingWebhook.excludeNamespaces, and the release namespace unless excludeReleaseNamespace is
false) added as one more expression on the label every namespace carries, so that no user
selector can bring them back by accident.
*/}}
{{- define "irsa-webhook.namespaceSelector" -}}
{{- $selector := deepCopy .Values.mutatingWebhook.namespaceSelector }}
{{- $excluded := .Values.mutatingWebhook.excludeNamespaces | default list }}
{{- if .Values.mutatingWebhook.excludeReleaseNamespace }}
{{- $excluded = append $excluded (include "irsa-webhook.namespace" .) }}
{{- end }}
{{- with $excluded | uniq }}
{{- $expression := dict "key" "kubernetes.io/metadata.name" "operator" "NotIn" "values" . }}
{{- $_ := set $selector "matchExpressions" (append ($selector.matchExpressions | default list) $expression) }}
{{- end }}
{{- toYaml $selector }}
{{- end }}
