{{/*
The reconciler's mode: off, report or restart (reconciler.mode).
*/}}
{{- define "irsa-webhook.reconcilerMode" -}}
{{- .Values.reconciler.mode | default "off" }}
{{- end }}

{{/*
The Lease that lets one webhook replica reconcile at a time; one per release.
*/}}
{{- define "irsa-webhook.reconcilerLease" -}}
{{- printf "%s-reconciler" (include "irsa-webhook.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The serve flags of the reconciler, nothing while it is off. It reads this release's registration
to consider only the pods the API server sends to the webhook.
*/}}
{{- define "irsa-webhook.reconcilerArgs" -}}
{{- if ne (include "irsa-webhook.reconcilerMode" .) "off" }}
- --reconcile={{ include "irsa-webhook.reconcilerMode" . }}
- --reconcile-interval={{ .Values.reconciler.interval }}
- --reconcile-restarts-per-minute={{ .Values.reconciler.restartsPerMinute }}
- --reconcile-hold-after-miss={{ .Values.reconciler.holdAfterMiss }}
- --reconcile-lease-name={{ include "irsa-webhook.reconcilerLease" . }}
- --reconcile-webhook-configuration={{ include "irsa-webhook.fullname" . }}
{{- end }}
{{- end }}

{{/*
The registration's namespaceSelector selects by namespace labels: the reconciler then lists the
namespaces once a pass. Empty ("{}") only when nothing is excluded and no selector is set.
*/}}
{{- define "irsa-webhook.reconcilerListsNamespaces" -}}
{{- if ne (include "irsa-webhook.namespaceSelector" . | trim) "{}" }}true{{ end }}
{{- end }}
