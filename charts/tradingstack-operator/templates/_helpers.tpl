{{/*
The app name. Fixed on purpose: the NetworkPolicies the operator renders admit pods labelled
app.kubernetes.io/name=tradingstack-operator (tradingstack.render.network.OPERATOR_POD_LABELS).
*/}}
{{- define "tradingstack-operator.name" -}}
tradingstack-operator
{{- end -}}

{{/*
Fully qualified name: <release>-<chart>, or the release name when it already contains the chart name.
Used for the Deployment, ServiceAccount, Service and RBAC objects.
*/}}
{{- define "tradingstack-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "tradingstack-operator.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tradingstack-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tradingstack-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tradingstack-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tradingstack-operator.labels" -}}
helm.sh/chart: {{ include "tradingstack-operator.chart" . }}
{{ include "tradingstack-operator.selectorLabels" . }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: quantum-trader
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "tradingstack-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tradingstack-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tradingstack-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion (toString .Values.image.tag)) -}}
{{- end -}}

{{/* The namespaces a namespace-scoped operator watches (default: the release namespace), as a list. */}}
{{- define "tradingstack-operator.watchNamespaces" -}}
{{- $namespaces := .Values.watchNamespaces | default (list .Release.Namespace) | uniq -}}
{{- toJson $namespaces -}}
{{- end -}}

{{/* Pod-level security context for Pod Security "restricted". */}}
{{- define "tradingstack-operator.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security context for Pod Security "restricted". */}}
{{- define "tradingstack-operator.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

