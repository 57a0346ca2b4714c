{{/*
Chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "mlflow-secrets.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the Service, the MutatingWebhookConfiguration, the ClusterRole and
the Lease are named from it, so two releases never collide.
*/}}
{{- define "mlflow-secrets.fullname" -}}
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

{{- define "mlflow-secrets.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mlflow-secrets.labels" -}}
helm.sh/chart: {{ include "mlflow-secrets.chart" . }}
{{ include "mlflow-secrets.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "mlflow-secrets.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlflow-secrets.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mlflow-secrets.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mlflow-secrets.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mlflow-secrets.leaseName" -}}
{{- default (printf "%s-operator" (include "mlflow-secrets.fullname" .)) .Values.operator.leaseName | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mlflow-secrets.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
true when the store is SQLite (no database URL Secret).
*/}}
{{- define "mlflow-secrets.sqlite" -}}
{{- if .Values.database.urlSecret.name }}false{{ else }}true{{ end }}
{{- end }}

{{/*
Replica count: the explicit value, else 2 with a database URL and 1 with
SQLite. Fails rendering for more than one replica on SQLite: a SQLite file on
a ReadWriteOnce volume has exactly one writer, and a second pod could neither
mount it nor safely write it.
*/}}
{{- define "mlflow-secrets.replicas" -}}
{{- $sqlite := eq (include "mlflow-secrets.sqlite" .) "true" }}
{{- $replicas := .Values.replicaCount }}
{{- if kindIs "invalid" $replicas }}
{{- $replicas = ternary 1 2 $sqlite }}
{{- end }}
{{- $replicas = int $replicas }}
{{- if and $sqlite (gt $replicas 1) }}
{{- fail (printf "replicaCount=%d with the SQLite store: SQLite supports exactly one operator replica. Set replicaCount to 1, or use PostgreSQL/MySQL with database.urlSecret.name for more replicas." $replicas) }}
{{- end }}
{{- if lt $replicas 1 }}
{{- fail (printf "replicaCount=%d: the operator serves the webhook, which fails closed for labelled pods; at least 1 replica is required." $replicas) }}
{{- end }}
{{- $replicas }}
{{- end }}

{{/*
The store URI for SQLite.
*/}}
{{- define "mlflow-secrets.sqliteUri" -}}
{{- printf "sqlite://%s" .Values.database.sqlite.path }}
{{- end }}

{{/*
Directory of the SQLite file (the data volume's mount path).
*/}}
{{- define "mlflow-secrets.sqliteDir" -}}
{{- dir .Values.database.sqlite.path }}
{{- end }}

{{- define "mlflow-secrets.pvcName" -}}
{{- default (printf "%s-data" (include "mlflow-secrets.fullname" .)) .Values.database.sqlite.persistence.existingClaim }}
{{- end }}

{{/*
The rules the operator needs in every namespace it serves: in the
ClusterRole cluster-wide, in one Role per namespace with rbac.namespaces.
One list, so the two modes cannot drift apart.
*/}}
{{- define "mlflow-secrets.workloadRules" -}}
# The CRDs: watch them, and add/remove the operator's finalizer.
- apiGroups: ["secrets.mlflow.org"]
  resources: ["mlflowsecrets", "mlflowsecretbindings"]
  verbs: ["get", "list", "watch", "patch", "update"]
# Status through server-side apply.
- apiGroups: ["secrets.mlflow.org"]
  resources: ["mlflowsecrets/status", "mlflowsecretbindings/status"]
  verbs: ["patch", "update"]
# Setting finalizers (and owner references with blockOwnerDeletion) where
# the OwnerReferencesPermissionEnforcement admission plugin is on.
- apiGroups: ["secrets.mlflow.org"]
  resources: ["mlflowsecrets/finalizers", "mlflowsecretbindings/finalizers"]
  verbs: ["update"]
# Secrets, for three uses: read the source Secrets of valueFrom imports
# (watched as metadata to re-import on change; read only when annotated
# secrets.mlflow.org/importable: "true"); create/update the per-Job Secret
# `<job>-mlflow-secrets` the webhook injects by reference; and remove a
# revoked, deleted or unbound value from those per-Job Secrets (patch out
# the key, delete the Secret when nothing is left: docs/design.md §8 "Revocation
# reaches every copy"). Cluster-wide this rule also covers the operator's
# own certificate Secret.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# The webhook reads the owning Job of every pod it injects (a watch cache,
# and a GET for a Job too new for it) and compares it with the pod: docs/design.md
# §8, "The Job is real". Read only.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch"]
# Events on MlflowSecret/MlflowSecretBinding objects (and on Jobs whose
# pods were denied), in both Event APIs.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
