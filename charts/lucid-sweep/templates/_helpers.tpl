{{/*
Chart name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "lucid-sweep.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: release name + chart name unless the release name already contains it.
Truncated to 52 characters so that suffixes ("-worker", "-submit-12") keep names under 63.
*/}}
{{- define "lucid-sweep.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "lucid-sweep.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels. Call with (dict "ctx" $ "component" "worker").
*/}}
{{- define "lucid-sweep.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lucid-sweep.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Standard labels of every resource. Call with (dict "ctx" $ "component" "worker").
*/}}
{{- define "lucid-sweep.labels" -}}
helm.sh/chart: {{ include "lucid-sweep.chart" .ctx }}
{{ include "lucid-sweep.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: lucid-sweep
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Name of the ServiceAccount the pods use.
*/}}
{{- define "lucid-sweep.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lucid-sweep.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference. Call with (dict "ctx" $ "image" .Values.worker.image).
*/}}
{{- define "lucid-sweep.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/*
Name of the sweep spec ConfigMap.
*/}}
{{- define "lucid-sweep.specConfigMap" -}}
{{- printf "%s-spec" (include "lucid-sweep.fullname" .) }}
{{- end }}

{{/*
The path the sweep spec is mounted at in every pod.
*/}}
{{- define "lucid-sweep.specPath" -}}
/etc/lucid/sweep.toml
{{- end }}

{{/*
terminationGracePeriodSeconds of the workers: the drain timeout plus a margin.
*/}}
{{- define "lucid-sweep.workerGracePeriod" -}}
{{- add (int .Values.worker.drainTimeoutSeconds) (int .Values.worker.terminationGraceExtraSeconds) }}
{{- end }}

{{/*
A TOML basic string (JSON string escapes are valid TOML).
*/}}
{{- define "lucid-sweep.tomlString" -}}
{{- toJson (toString .) }}
{{- end }}

{{/*
A TOML float: always has a decimal point or exponent.
*/}}
{{- define "lucid-sweep.tomlFloat" -}}
{{- $s := toString (float64 .) }}
{{- if regexMatch "[.eE]" $s }}{{ $s }}{{ else }}{{ printf "%s.0" $s }}{{ end }}
{{- end }}

{{/*
Location of one seed's checkpoint. Call with (dict "ctx" $ "seed" "training_seed_01").
*/}}
{{- define "lucid-sweep.modelLocation" -}}
{{- $models := .ctx.Values.models }}
{{- if hasKey $models.locations .seed }}
{{- index $models.locations .seed }}
{{- else if eq $models.source "pvc" }}
{{- printf "%s/%s" (trimSuffix "/" $models.pvc.mountPath) .seed }}
{{- else }}
{{- printf "%s/%s" (trimSuffix "/" $models.s3.prefix) .seed }}
{{- end }}
{{- end }}

{{/*
The sweep spec as TOML (the format of examples/ecoset-sweep.toml). Contains no credentials.
*/}}
{{- define "lucid-sweep.sweepToml" -}}
{{- $s := .Values.sweep -}}
# Rendered by the lucid-sweep Helm chart from .Values.sweep and .Values.models.
# Credentials are not here: LUCID_AMQP_URI and LUCID_S3_* come from Secrets.
run_id = {{ include "lucid-sweep.tomlString" $s.runId }}
{{- if kindIs "string" $s.layers }}
layers = {{ include "lucid-sweep.tomlString" $s.layers }}
{{- else }}
layers = [{{ range $i, $l := $s.layers }}{{ if $i }}, {{ end }}{{ include "lucid-sweep.tomlString" $l }}{{ end }}]
{{- end }}
channels = {{ include "lucid-sweep.tomlString" $s.channels }}

[models]
{{- range $seed := .Values.models.seeds }}
{{ include "lucid-sweep.tomlString" $seed }} = {{ include "lucid-sweep.tomlString" (include "lucid-sweep.modelLocation" (dict "ctx" $ "seed" $seed)) }}
{{- end }}
{{- with $s.channelsPerLayer }}

[channels_per_layer]
{{- range $layer, $sel := . }}
{{ include "lucid-sweep.tomlString" $layer }} = {{ include "lucid-sweep.tomlString" $sel }}
{{- end }}
{{- end }}

[render]
steps = {{ int $s.render.steps }}
size = {{ int $s.render.size }}
objective = {{ include "lucid-sweep.tomlString" $s.render.objective }}
batch = {{ int $s.render.batch }}
run_seed = {{ int64 $s.render.runSeed }}
param = {{ include "lucid-sweep.tomlString" $s.render.param }}
decorrelate = {{ $s.render.decorrelate }}
transforms = {{ include "lucid-sweep.tomlString" $s.render.transforms }}
lr = {{ include "lucid-sweep.tomlFloat" $s.render.lr }}
precision = {{ include "lucid-sweep.tomlString" $s.render.precision }}

[storage]
kind = {{ include "lucid-sweep.tomlString" $s.storage.kind }}
{{- with $s.storage.endpoint }}
endpoint = {{ include "lucid-sweep.tomlString" . }}
{{- end }}
bucket = {{ include "lucid-sweep.tomlString" $s.storage.bucket }}
prefix = {{ include "lucid-sweep.tomlString" $s.storage.prefix }}
region = {{ include "lucid-sweep.tomlString" $s.storage.region }}
path_style = {{ $s.storage.pathStyle }}
checksum = {{ include "lucid-sweep.tomlString" $s.storage.checksum }}

[queue]
uri = {{ include "lucid-sweep.tomlString" $s.queue.uri }}
tasks = {{ include "lucid-sweep.tomlString" $s.queue.tasks }}
dead_letter_exchange = {{ include "lucid-sweep.tomlString" $s.queue.deadLetterExchange }}
dead_letter_queue = {{ include "lucid-sweep.tomlString" $s.queue.deadLetterQueue }}
prefetch = {{ int $s.queue.prefetch }}
delivery_limit = {{ int $s.queue.deliveryLimit }}
max_message_bytes = {{ int $s.queue.maxMessageBytes }}
{{ end }}

{{/*
Environment shared by every container: log filter and credentials from Secrets (never values).
*/}}
{{- define "lucid-sweep.env" -}}
# log filters: LUCID_LOG (lucid-worker), RUST_LOG (lucid-coordinator)
- name: LUCID_LOG
  value: {{ .Values.logLevel | quote }}
- name: RUST_LOG
  value: {{ .Values.logLevel | quote }}
- name: HOME
  value: /tmp
# checkpoints read from S3 are cached here (the /tmp emptyDir; size it with tmpSizeLimit)
- name: LUCID_CACHE_DIR
  value: /tmp/lucid-cache
- name: LUCID_AMQP_URI
  valueFrom:
    secretKeyRef:
      name: {{ .Values.amqp.existingSecret }}
      key: {{ .Values.amqp.uriKey }}
{{- if .Values.s3.existingSecret }}
- name: LUCID_S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .Values.s3.existingSecret }}
      key: {{ .Values.s3.accessKeyIdKey }}
- name: LUCID_S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.s3.existingSecret }}
      key: {{ .Values.s3.secretAccessKeyKey }}
{{- end }}
{{- end }}

{{/*
Volume mounts shared by every container: the spec, /tmp, and the model claim when models come from a PVC.
*/}}
{{- define "lucid-sweep.volumeMounts" -}}
- name: spec
  mountPath: {{ include "lucid-sweep.specPath" . }}
  subPath: sweep.toml
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if eq .Values.models.source "pvc" }}
- name: models
  mountPath: {{ .Values.models.pvc.mountPath }}
  {{- with .Values.models.pvc.subPath }}
  subPath: {{ . }}
  {{- end }}
  readOnly: true
{{- end }}
{{- end }}

{{/*
Volumes matching lucid-sweep.volumeMounts. Call with (dict "ctx" $ "tmpSizeLimit" "1Gi").
*/}}
{{- define "lucid-sweep.volumes" -}}
- name: spec
  configMap:
    name: {{ include "lucid-sweep.specConfigMap" .ctx }}
- name: tmp
  emptyDir:
    sizeLimit: {{ .tmpSizeLimit }}
{{- if eq .ctx.Values.models.source "pvc" }}
- name: models
  persistentVolumeClaim:
    claimName: {{ required "models.pvc.existingClaim is required when models.source is pvc" .ctx.Values.models.pvc.existingClaim }}
    readOnly: true
{{- end }}
{{- end }}

{{/*
Pod-level settings of the coordinator pods (submit Job, watch, status test).
*/}}
{{- define "lucid-sweep.coordinatorPodSpec" -}}
serviceAccountName: {{ include "lucid-sweep.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.coordinator.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
securityContext:
  {{- toYaml .Values.coordinator.podSecurityContext | nindent 2 }}
{{- with .Values.coordinator.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.coordinator.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.coordinator.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  {{- include "lucid-sweep.volumes" (dict "ctx" . "tmpSizeLimit" .Values.coordinator.tmpSizeLimit) | nindent 2 }}
{{- end }}

{{/*
Container settings shared by the coordinator containers (everything but name, args and ports).
*/}}
{{- define "lucid-sweep.coordinatorContainer" -}}
image: {{ include "lucid-sweep.image" (dict "ctx" . "image" .Values.coordinator.image) }}
imagePullPolicy: {{ .Values.coordinator.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.coordinator.securityContext | nindent 2 }}
env:
  {{- include "lucid-sweep.env" . | nindent 2 }}
  {{- with .Values.coordinator.rabbitApi }}
  # RabbitMQ management API (unacked and consumer counts); authenticated as the AMQP URI's user.
  - name: LUCID_RABBIT_API
    value: {{ . | quote }}
  {{- end }}
  {{- with .Values.coordinator.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
resources:
  {{- toYaml .Values.coordinator.resources | nindent 2 }}
volumeMounts:
  {{- include "lucid-sweep.volumeMounts" . | nindent 2 }}
{{- end }}

{{/*
Whether the cluster serves the Prometheus operator's CRDs.
*/}}
{{- define "lucid-sweep.hasPrometheusOperator" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}true{{ end }}
{{- end }}

{{/*
Name of the submit Job: "<fullname>-submit" as a hook, "<fullname>-submit-<suffix>" otherwise (suffix defaults
to the release revision). Kept within 63 characters, the limit of the job-name label, without cutting the suffix.
*/}}
{{- define "lucid-sweep.submitJobName" -}}
{{- $fullname := include "lucid-sweep.fullname" . }}
{{- if .Values.coordinator.submit.hook }}
{{- printf "%s-submit" $fullname }}
{{- else }}
{{- $suffix := default (toString .Release.Revision) .Values.coordinator.submit.nameSuffix }}
{{- printf "%s-submit-%s" ($fullname | trunc (int (sub 55 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}
{{- end }}
