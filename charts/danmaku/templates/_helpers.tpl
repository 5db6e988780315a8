{{/* Names ------------------------------------------------------------------------------ */}}
{{- define "danmaku.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "danmaku.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "danmaku.secretName" -}}
{{- default (printf "%s-secrets" (include "danmaku.fullname" .)) .Values.secret.existingSecret -}}
{{- end -}}

{{/* The Service every slot's pods are behind, for Istio subsets (and metrics). */}}
{{- define "danmaku.meshServiceName" -}}
{{- printf "%s-mesh" (include "danmaku.fullname" .) -}}
{{- end -}}

{{/* Labels -------------------------------------------------------------------------------- */}}
{{- define "danmaku.selectorLabels" -}}
app.kubernetes.io/name: {{ include "danmaku.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "danmaku.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "danmaku.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one slot: the slot label is part of every selector from the start
     (a Deployment's selector cannot change later). Call with (dict "root" $ "slot" "blue"). */}}
{{- define "danmaku.slotSelectorLabels" -}}
{{ include "danmaku.selectorLabels" .root }}
slot: {{ .slot }}
{{- end -}}

{{- define "danmaku.slotLabels" -}}
{{ include "danmaku.labels" .root }}
slot: {{ .slot }}
{{- end -}}

{{/* Checks -------------------------------------------------------------------------------- */}}
{{- define "danmaku.validate" -}}
{{- $active := .Values.activeSlot -}}
{{- if not (has $active (list "blue" "green")) -}}
{{- fail (printf "activeSlot must be blue or green, not %q" (toString $active)) -}}
{{- end -}}
{{- $slot := index .Values.slots $active -}}
{{- if not $slot.enabled -}}
{{- fail (printf "activeSlot is %s but slots.%s.enabled is false: enable it before making it active" $active $active) -}}
{{- end -}}
{{- range $k, $_ := .Values.config -}}
{{- if has $k (list "DANMAKU_LISTEN" "DANMAKU_SLOT" "DANMAKU_POD_NAME" "DANMAKU_JWT_SECRET" "DANMAKU_SERVICE_TOKENS") -}}
{{- fail (printf "config.%s is set by the chart (listen address, slot, pod name) or comes from the Secret; remove it from config" $k) -}}
{{- end -}}
{{- if hasPrefix "DANMAKU_REDIS_" $k | and (ne $k "DANMAKU_REDIS_URL") -}}
{{- fail (printf "config.%s: set the Redis user and files under `redis` (username, existingSecret and its keys)" $k) -}}
{{- end -}}
{{- if eq $k "DANMAKU_JWT_PUBLIC_KEY_FILE" -}}
{{- fail "config.DANMAKU_JWT_PUBLIC_KEY_FILE: set the Secret holding the key under `jwt` (existingSecret, publicKeyKey); the chart mounts it" -}}
{{- end -}}
{{- end -}}
{{- $redis := .Values.redis -}}
{{- if and (or $redis.passwordKey $redis.caKey $redis.certKey $redis.keyKey) (not $redis.existingSecret) -}}
{{- fail "redis.passwordKey/caKey/certKey/keyKey name keys of redis.existingSecret: set it" -}}
{{- end -}}
{{- if ne (empty $redis.certKey) (empty $redis.keyKey) -}}
{{- fail "redis.certKey and redis.keyKey go together (mutual TLS)" -}}
{{- end -}}
{{- if ne (empty .Values.jwt.existingSecret) (empty .Values.jwt.publicKeyKey) -}}
{{- fail "jwt.existingSecret and jwt.publicKeyKey go together (the Secret and its key holding the PEM public key)" -}}
{{- end -}}
{{- if not .Values.resources.limits.cpu -}}
{{- fail "resources.limits.cpu is required: /readyz compares CPU against the cgroup limit (docs/readiness.md)" -}}
{{- end -}}
{{- end -}}

{{/* The effective config of a slot: its overrides merged over `config`. */}}
{{- define "danmaku.slotConfig" -}}
{{- $slot := index .root.Values.slots .slot -}}
{{- toYaml (merge (deepCopy (default dict $slot.config)) .root.Values.config) -}}
{{- end -}}

{{/* CPU quantity ("500m", "1", "1.5") in millicores. */}}
{{- define "danmaku.cpuMillis" -}}
{{- $q := toString . -}}
{{- if hasSuffix "m" $q -}}
{{- trimSuffix "m" $q | atoi -}}
{{- else -}}
{{- mulf (float64 $q) 1000 | int -}}
{{- end -}}
{{- end -}}

{{/* terminationGracePeriodSeconds of a slot: at least the drain time (rounded up) plus the
     preStop sleep plus a margin for the exit after the drain; a set value below that fails. */}}
{{- define "danmaku.terminationGracePeriodSeconds" -}}
{{- $cfg := include "danmaku.slotConfig" . | fromYaml -}}
{{- $drainMs := int (default "10000" (toString (index $cfg "DANMAKU_DRAIN_MS"))) -}}
{{- $sd := .root.Values.shutdown -}}
{{- $preStop := int $sd.preStopSleepSeconds -}}
{{- if lt $preStop 1 -}}
{{- fail "shutdown.preStopSleepSeconds must be at least 1: endpoints must drop the pod before SIGTERM" -}}
{{- end -}}
{{- $margin := int $sd.marginSeconds -}}
{{- if lt $margin 5 -}}
{{- fail "shutdown.marginSeconds must be at least 5: danmaku exits within 2-4 s after its drain" -}}
{{- end -}}
{{- $min := add (div (add $drainMs 999) 1000) $preStop $margin -}}
{{- if eq (toString $sd.terminationGracePeriodSeconds) "" -}}
{{- $min -}}
{{- else -}}
{{- $set := int $sd.terminationGracePeriodSeconds -}}
{{- if lt $set $min -}}
{{- fail (printf "shutdown.terminationGracePeriodSeconds=%d is too short for slot %s: DANMAKU_DRAIN_MS=%d needs at least %d (ceil(drain/1000) + preStop %d + margin %d)" $set .slot $drainMs $min $preStop $margin) -}}
{{- end -}}
{{- $set -}}
{{- end -}}
{{- end -}}

{{/* The HPA target must not sit above the point where /readyz closes: target% of the request
     must be below threshold x limit. */}}
{{- define "danmaku.checkHpaTarget" -}}
{{- $cfg := include "danmaku.slotConfig" . | fromYaml -}}
{{- $v := .root.Values -}}
{{- $threshold := float64 (default "0.80" (toString (index $cfg "DANMAKU_CPU_READY_THRESHOLD"))) -}}
{{- $req := float64 (include "danmaku.cpuMillis" $v.resources.requests.cpu) -}}
{{- $lim := float64 (include "danmaku.cpuMillis" $v.resources.limits.cpu) -}}
{{- $target := mulf (divf (float64 $v.autoscaling.targetCPUUtilizationPercentage) 100.0) $req -}}
{{- if ge $target (mulf $threshold $lim) -}}
{{- fail (printf "autoscaling.targetCPUUtilizationPercentage=%v%% of the %vm request is at or above the readiness threshold %v x the %vm limit: pods would turn unready before the HPA scales out" $v.autoscaling.targetCPUUtilizationPercentage $req $threshold $lim) -}}
{{- end -}}
{{- end -}}

{{- define "danmaku.imageTag" -}}
{{- $slot := index .root.Values.slots .slot -}}
{{- $slotTag := "" -}}
{{- if $slot.image -}}{{- $slotTag = $slot.image.tag -}}{{- end -}}
{{- default (default .root.Chart.AppVersion .root.Values.image.tag) $slotTag -}}
{{- end -}}

{{/* Istio: the in-cluster host of the mesh Service and the gateways a VirtualService binds. */}}
{{- define "danmaku.meshHost" -}}
{{- printf "%s.%s.svc.cluster.local" (include "danmaku.meshServiceName" .) .Release.Namespace -}}
{{- end -}}

{{- define "danmaku.istioGateways" -}}
{{- $gws := list -}}
{{- if .Values.istio.gateway.create -}}
{{- $gws = append $gws (include "danmaku.fullname" .) -}}
{{- end -}}
{{- $gws = concat $gws .Values.istio.gateways -}}
{{- if not $gws -}}
{{- fail "istio.enabled needs istio.gateway.create or at least one name in istio.gateways" -}}
{{- end -}}
{{- toYaml $gws -}}
{{- end -}}

{{/* The Redis Secret's keys that are set, as "key: ENV_VARIABLE" lines. */}}
{{- define "danmaku.redisFiles" -}}
{{- $r := .Values.redis -}}
{{- range $pair := list (list $r.passwordKey "DANMAKU_REDIS_PASSWORD_FILE") (list $r.caKey "DANMAKU_REDIS_CA_FILE") (list $r.certKey "DANMAKU_REDIS_CERT_FILE") (list $r.keyKey "DANMAKU_REDIS_KEY_FILE") }}
{{- if index $pair 0 }}
{{ index $pair 0 | quote }}: {{ index $pair 1 }}
{{- end }}
{{- end }}
{{- end -}}
