#!/bin/sh
# Writes an Envoy bootstrap with the policy document embedded in it.
#
# Envoy's wasm `configuration` is a value inside Envoy's configuration: Envoy
# cannot point it at a file. So policy.json stays its own file (a ConfigMap key,
# ./policy.json in docker compose), and this script copies it into the template
# where a line holds only @POLICY_JSON@ (under `value: |`), at that line's
# indentation, before Envoy starts. Envoy reads its bootstrap once: after
# editing the policy, restart Envoy (Kubernetes: `kubectl rollout restart`).
#
#   TEMPLATE=envoy.yaml.tmpl POLICY=policy.json OUT=envoy.yaml sh render-envoy-config.sh
#
# POSIX sh and awk only: runs in the envoyproxy/envoy image (Ubuntu). The same
# text is in the Kubernetes ConfigMaps under deploy/; tests/deployment.rs runs
# it on every template and keeps the copies identical.
set -eu
: "${TEMPLATE:?path of the Envoy template}" "${POLICY:?path of policy.json}" "${OUT:?path to write}"
awk -v policy="$POLICY" '
  /^[ ]*@POLICY_JSON@[ ]*$/ {
    if (found) { print "render-envoy-config: more than one @POLICY_JSON@ line" > "/dev/stderr"; failed = 1; exit 1 }
    indent = substr($0, 1, index($0, "@POLICY_JSON@") - 1)
    lines = 0
    while ((status = (getline line < policy)) > 0) { print indent line; lines++ }
    if (status < 0 || lines == 0) { print "render-envoy-config: cannot read " policy > "/dev/stderr"; failed = 1; exit 1 }
    found = 1
    next
  }
  { print }
  END {
    if (failed) exit 1
    if (!found) { print "render-envoy-config: no @POLICY_JSON@ line in the template" > "/dev/stderr"; exit 1 }
  }
' "$TEMPLATE" > "$OUT"
echo "render-envoy-config: wrote $OUT ($POLICY embedded)"
