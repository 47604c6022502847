{{/* Chart name, truncated for label values. */}}
{{- define "kubemaker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the release's objects. */}}
{{- define "kubemaker.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of cluster-scoped objects: the namespace keeps two releases apart. */}}
{{- define "kubemaker.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "kubemaker.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubemaker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubemaker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kubemaker.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kubemaker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: kubemaker
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "kubemaker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kubemaker.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kubemaker.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The operator's permissions: exactly what its controllers do, no wildcards.
- kubemaker.io kinds: watched (list, watch), read (get); patch/update for kopf's
  metadata bookkeeping; status written through the status subresource.
- batch Jobs: a TrainingJob's and a BatchTransform's Indexed Job are created, watched,
  deleted (stop, TTL, retry) and patched (a BatchTransform's stop suspends its Job).
- Services: the headless Service giving training pods stable host names.
- Pods: watched (status, termination messages of the agent), never changed.
- Events: recorded on the objects.
*/}}
{{- define "kubemaker.rules" -}}
{{- /*
Exactly what the operator uses (docs/helm.md).
*/}}
- apiGroups: ["kubemaker.io"]
  resources: ["trainingjobs", "endpoints", "tuningjobs", "batchtransforms"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["kubemaker.io"]
  # a TuningJob's trials: created, and stopped through spec.stop
  resources: ["trainingjobs"]
  verbs: ["create", "patch"]
- apiGroups: ["kubemaker.io"]
  resources:
  - trainingjobs/status
  - endpoints/status
  - tuningjobs/status
  - batchtransforms/status
  verbs: ["patch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  # patch: a stopped BatchTransform's Job is suspended
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  # an Endpoint's fleets and router
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: [""]
  # an Endpoint router's routing table
  resources: ["configmaps"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  # targetCpuUtilization variants
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  # patch: a stopped TrainingJob's pods are stopped in place (activeDeadlineSeconds),
  # so their logs stay; the operator never deletes or creates pods
  verbs: ["list", "watch", "patch"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  # list: a Job's FailedCreate events say why the cluster refused its pods
  verbs: ["create", "list"]
{{- end -}}
