{{/* The image of one component: <repositoryPrefix><component>:<tag>. */}}
{{- define "couchestor.image" -}}
{{ .root.Values.image.repositoryPrefix }}{{ .component }}:{{ .root.Values.image.tag | default .root.Chart.AppVersion }}
{{- end -}}

{{/* Labels shared by every object of one component. */}}
{{- define "couchestor.labels" -}}
app.kubernetes.io/name: couchestor-{{ . }}
app.kubernetes.io/part-of: couchestor
{{- end -}}
