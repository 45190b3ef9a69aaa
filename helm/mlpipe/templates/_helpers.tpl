{{/* Helpers of the mlpipe chart. */}}

{{/* The chart's name. */}}
{{- define "mlpipe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: <release>-mlpipe, or the release name when it already contains the chart name. */}}
{{- define "mlpipe.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "mlpipe.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels of every object: `include "mlpipe.labels" (list . "component")`. */}}
{{- define "mlpipe.labels" -}}
{{- $ := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $.Chart.Name $.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ $.Release.Service }}
app.kubernetes.io/part-of: mlpipe
app.kubernetes.io/version: {{ $.Chart.AppVersion | quote }}
{{ include "mlpipe.selectorLabels" . }}
{{- with $.Values.labels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of a component: `include "mlpipe.selectorLabels" (list . "component")`. */}}
{{- define "mlpipe.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "mlpipe.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* An image reference from {repository, tag}; the tag defaults to the chart's appVersion. */}}
{{- define "mlpipe.image" -}}
{{- $ := index . 0 -}}
{{- $image := index . 1 }}
{{- printf "%s:%s" $image.repository (default $.Chart.AppVersion $image.tag) }}
{{- end }}

{{/* Name of the MLflow tracking server's Deployment and Service. */}}
{{- define "mlpipe.mlflow.name" -}}
{{- printf "%s-mlflow" (include "mlpipe.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The tracking URI every client gets: the in-cluster Service, or `mlflow.trackingUri`. */}}
{{- define "mlpipe.mlflow.uri" -}}
{{- if .Values.mlflow.enabled }}
{{- printf "http://%s.%s.svc:%d" (include "mlpipe.mlflow.name" .) .Release.Namespace (int .Values.mlflow.port) }}
{{- else }}
{{- required "mlflow.trackingUri is required when mlflow.enabled is false" .Values.mlflow.trackingUri }}
{{- end }}
{{- end }}

{{/* Name of the model server's Deployment, Service and HPA. */}}
{{- define "mlpipe.modelServer.name" -}}
{{- printf "%s-model-server" (include "mlpipe.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The model server's in-cluster URL (what the deploy step reloads and smoke-tests). */}}
{{- define "mlpipe.modelServer.url" -}}
{{- printf "http://%s.%s.svc:%d" (include "mlpipe.modelServer.name" .) .Release.Namespace (int .Values.modelServer.port) }}
{{- end }}

{{/*
The ServiceAccount name of an Airflow component (scheduler, workers, triggerer): `airflow.<component>.serviceAccount.name`
when set, else the official chart's default, <airflow fullname>-<scheduler|worker|triggerer>.
*/}}
{{- define "mlpipe.airflowServiceAccount" -}}
{{- $ := index . 0 -}}
{{- $component := index . 1 }}
{{- $values := index $.Values.airflow $component | default dict }}
{{- $name := dig "serviceAccount" "name" "" $values }}
{{- if $name }}
{{- $name }}
{{- else }}
{{- $airflow := ternary $.Release.Name (printf "%s-airflow" $.Release.Name) (contains "airflow" $.Release.Name) }}
{{- printf "%s-%s" ($airflow | trunc 63 | trimSuffix "-") (trimSuffix "s" $component) }}
{{- end }}
{{- end }}

{{/* The non-secret env every mlpipe process gets (the store, MLflow, S3), as ConfigMap data. */}}
{{- define "mlpipe.commonEnv" -}}
MLPIPE_STORE: {{ .Values.store.uri | quote }}
MLFLOW_TRACKING_URI: {{ include "mlpipe.mlflow.uri" . | quote }}
{{- if .Values.modelServer.enabled }}
MLPIPE_SERVER_URL: {{ include "mlpipe.modelServer.url" . | quote }}
{{- end }}
AWS_DEFAULT_REGION: {{ .Values.s3.region | quote }}
{{- with .Values.s3.endpointUrl }}
AWS_ENDPOINT_URL: {{ . | quote }}
{{- end }}
{{- with .Values.s3.serverSideEncryption.kmsKeyId }}
MLPIPE_S3_KMS_KEY_ID: {{ . | quote }}
{{- end }}
{{- end }}

{{/* The bucket of the artifact store (the host of store.uri, s3://<bucket>/<prefix>). */}}
{{- define "mlpipe.bucket" -}}
{{- required "store.uri must be s3://<bucket>/<prefix>" (urlParse .Values.store.uri).host -}}
{{- end }}

{{/* The server-side encryption every S3 write requests: aws:kms with s3.serverSideEncryption.kmsKeyId, else AES256. */}}
{{- define "mlpipe.sseAlgorithm" -}}
{{- ternary "aws:kms" "AES256" (not (empty .Values.s3.serverSideEncryption.kmsKeyId)) -}}
{{- end }}

{{/*
The store bucket's policy (JSON): every put must request server-side encryption, the chart's algorithm, and
with a KMS key that key; no request over plain HTTP.
*/}}
{{- define "mlpipe.bucketPolicy" -}}
{{- $bucket := include "mlpipe.bucket" . -}}
{{- $objects := printf "arn:aws:s3:::%s/*" $bucket -}}
{{- $kms := .Values.s3.serverSideEncryption.kmsKeyId -}}
{{- $deny := dict "Effect" "Deny" "Principal" "*" "Action" "s3:PutObject" "Resource" $objects -}}
{{- $statements := list
  (merge (dict "Sid" "DenyPutsWithoutEncryption" "Condition" (dict "Null" (dict "s3:x-amz-server-side-encryption" "true"))) $deny)
  (merge (dict "Sid" "DenyOtherEncryption" "Condition" (dict "StringNotEquals" (dict "s3:x-amz-server-side-encryption" (include "mlpipe.sseAlgorithm" .)))) $deny) -}}
{{- if $kms }}
{{- $statements = append $statements (merge (dict "Sid" "DenyOtherKmsKeys" "Condition" (dict "StringNotEquals" (dict "s3:x-amz-server-side-encryption-aws-kms-key-id" $kms))) $deny) }}
{{- end }}
{{- $statements = append $statements (dict "Sid" "DenyPlainHttp" "Effect" "Deny" "Principal" "*" "Action" "s3:*" "Resource" (list (printf "arn:aws:s3:::%s" $bucket) $objects) "Condition" (dict "Bool" (dict "aws:SecureTransport" "false"))) }}
{{- dict "Version" "2012-10-17" "Statement" $statements | toPrettyJson }}
{{- end }}
