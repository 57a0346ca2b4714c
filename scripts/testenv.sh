#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# A real Kubernetes control plane for tests: etcd, kube-apiserver and
# kube-controller-manager, built from the Go module proxy and run on loopback.
# There is no kubelet and no scheduler: Pods are admitted and stored, but stay
# Pending. See docs/testing.md.
#
# Usage: scripts/testenv.sh build|up|down|env|bin-dir|status|selftest
#
#   build     build kube-apiserver, kube-controller-manager, kubectl, etcd and
#             helm into the cache (a no-op when they are already there)
#   up        start a fresh control plane; prints the kubeconfig path last
#   down      stop what `up` started (by pid) and remove its data
#   env       print `export KUBECONFIG=... PATH=<bin dir>:$PATH`
#   bin-dir   print the directory of the built binaries
#   status    show the components and their pids; exit 1 unless all run
#   selftest  up, check the API, down, and check that no process is left,
#             in a run directory of its own
#
# Environment:
#   MLFLOW_SECRETS_TESTENV_DIR    run directory (state, pki, data, logs);
#                                 default /tmp/mlflow-secrets-testenv
#   MLFLOW_SECRETS_TESTENV_CACHE  build cache root; default
#                                 ${XDG_CACHE_HOME:-$HOME/.cache}/mlflow-secrets/testenv
#   MLFLOW_SECRETS_TESTENV_GO_P   parallel Go compile jobs (default 2)
#   MLFLOW_SECRETS_TESTENV_TIMEOUT  seconds `up` waits for each component (default 90)
#   MLFLOW_SECRETS_TESTENV_KCM_CONTROLLERS  kube-controller-manager's
#                                 --controllers (default: the list below);
#                                 scripts/bench_webhook.sh drops the job
#                                 controller so its fixture Jobs stay inert
set -euo pipefail

# --- pinned versions ---------------------------------------------------------
# KUBE_VERSION must match scripts/testenv/kubernetes/go.mod (require and the
# replace block), ETCD_VERSION scripts/testenv/etcd/go.mod.
KUBE_VERSION=v1.34.12
ETCD_VERSION=v3.6.16
HELM_VERSION=v3.21.4
# Helm takes its offline default KubeVersion from the client-go it is built
# with (helm's Makefile derives it the same way): client-go v0.36 -> 1.36.
HELM_K8S_MAJOR=1
HELM_K8S_MINOR=36

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WRAPPER_DIR="$SCRIPT_DIR/testenv"
CACHE_ROOT=${MLFLOW_SECRETS_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mlflow-secrets/testenv}
VERSION_DIR="$CACHE_ROOT/$KUBE_VERSION"
BIN_DIR="$VERSION_DIR/bin"
RUN_DIR=${MLFLOW_SECRETS_TESTENV_DIR:-/tmp/mlflow-secrets-testenv}
GO_P=${MLFLOW_SECRETS_TESTENV_GO_P:-2}
WAIT_TIMEOUT=${MLFLOW_SECRETS_TESTENV_TIMEOUT:-90}

# Components in start order; `down` stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager)
# Controllers kube-controller-manager runs. The tests need job,
# garbage-collector, namespace and serviceaccount; the rest make charts and
# Deployments behave as in a cluster (ReplicaSets and Pods get created, PDB
# status, aggregated ClusterRoles, the kube-root-ca.crt ConfigMap used by
# projected service-account tokens).
DEFAULT_KCM_CONTROLLERS=job-controller,cronjob-controller,garbage-collector-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller,deployment-controller,replicaset-controller,statefulset-controller,daemonset-controller,disruption-controller,ttl-after-finished-controller,pod-garbage-collector-controller,clusterrole-aggregation-controller,resourcequota-controller
KCM_CONTROLLERS=${MLFLOW_SECRETS_TESTENV_KCM_CONTROLLERS:-$DEFAULT_KCM_CONTROLLERS}

log() { printf 'testenv: %s\n' "$*" >&2; }
die() { printf 'testenv: error: %s\n' "$*" >&2; exit 1; }

need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' is not on PATH"
  done
}

# ============================================================================
# build
# ============================================================================

# The recipe of a binary: when it changes, the binary is rebuilt.
recipe() {
  local what=$1; shift
  {
    printf '%s\n' "$what" "$@"
    go env GOVERSION GOOS GOARCH
    case "$what" in
      kubernetes) cat "$WRAPPER_DIR/kubernetes/go.mod" "$WRAPPER_DIR/kubernetes/go.sum" ;;
      etcd) cat "$WRAPPER_DIR/etcd/go.mod" "$WRAPPER_DIR/etcd/go.sum" ;;
    esac
  } | sha256sum | cut -d' ' -f1
}

is_current() { # is_current STAMP RECIPE BINARY...
  local stamp=$1 want=$2 bin; shift 2
  [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] || return 1
  for bin in "$@"; do [[ -x "$BIN_DIR/$bin" ]] || return 1; done
}

# Move freshly built binaries from a scratch dir into BIN_DIR atomically (same
# file system), then write the stamp, so an interrupted build never leaves a
# stamp over a partial binary.
install_bins() { # install_bins SCRATCH STAMP RECIPE BINARY...
  local scratch=$1 stamp=$2 want=$3 bin; shift 3
  for bin in "$@"; do
    [[ -x "$scratch/$bin" ]] || die "build produced no $bin in $scratch"
    mv -f "$scratch/$bin" "$BIN_DIR/$bin"
  done
  printf '%s\n' "$want" > "$stamp"
}

# shellcheck disable=SC2317 # called indirectly
in_dir() { # in_dir DIR CMD...: run CMD in DIR
  ( cd "$1" && shift && exec "$@" )
}

timed() { # timed LABEL LOGFILE CMD...: run, log, report the time, tail on failure
  local label=$1 logfile=$2 start rc=0; shift 2
  start=$(date +%s)
  log "building $label (log: $logfile)"
  "$@" >"$logfile" 2>&1 || rc=$?
  if (( rc != 0 )); then
    tail -n 40 "$logfile" >&2 || true
    die "building $label failed (exit $rc); full log: $logfile"
  fi
  log "built $label in $(( $(date +%s) - start ))s"
}

kube_ldflags() {
  local major minor pkg flags="-s -w"
  major=${KUBE_VERSION#v}; major=${major%%.*}
  minor=${KUBE_VERSION#v"$major".}; minor=${minor%%.*}
  # kubectl reports k8s.io/client-go/pkg/version; the servers (and so
  # /version and Helm's .Capabilities.KubeVersion) k8s.io/component-base/version.
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  printf '%s' "$flags"
}

helm_ldflags() {
  local flags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  flags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  flags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$HELM_K8S_MAJOR"
  flags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HELM_K8S_MINOR"
  flags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$HELM_K8S_MAJOR"
  flags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM_K8S_MINOR"
  printf '%s' "$flags"
}

cmd_build() {
  need go sha256sum flock
  local gover
  gover=$(go env GOVERSION)
  # etcd 3.6.16 and helm 3.21 declare go 1.26.0.
  if ! [[ "$gover" =~ ^go1\.([0-9]+) ]] || (( BASH_REMATCH[1] < 26 )); then
    die "Go >= 1.26 is required to build the control plane (found $gover)"
  fi

  mkdir -p "$BIN_DIR" "$VERSION_DIR/logs"
  # One build at a time per version (two test processes may race here).
  exec 9>"$VERSION_DIR/.build.lock"
  flock 9

  # Never download a different Go toolchain, never touch a go.work around us,
  # and never rewrite the committed go.mod/go.sum.
  # No VCS stamping: the wrapper modules sit inside this repository's checkout.
  export GOTOOLCHAIN=local GOWORK=off GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false"
  export CGO_ENABLED=0
  local scratch
  scratch=$(mktemp -d "$VERSION_DIR/.build.XXXXXX")
  # shellcheck disable=SC2064  # expand now: scratch is local
  trap "rm -rf '$scratch'" EXIT

  local all_start want ld
  all_start=$(date +%s)

  # kube-apiserver, kube-controller-manager, kubectl: one `go build`, so the
  # packages they share compile once. `providerless` drops the in-tree cloud
  # providers, as kubernetes' own builds can.
  ld=$(kube_ldflags)
  want=$(recipe kubernetes "$KUBE_VERSION" "$ld" providerless)
  if is_current "$VERSION_DIR/.kubernetes.stamp" "$want" kube-apiserver kube-controller-manager kubectl; then
    log "kubernetes $KUBE_VERSION binaries are up to date"
  else
    timed "kube-apiserver, kube-controller-manager, kubectl $KUBE_VERSION" "$VERSION_DIR/logs/build-kubernetes.log" \
      in_dir "$WRAPPER_DIR/kubernetes" go build -p "$GO_P" \
        -trimpath -tags providerless -ldflags "$ld" -o "$scratch/" \
        k8s.io/kubernetes/cmd/kube-apiserver \
        k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kubectl
    install_bins "$scratch" "$VERSION_DIR/.kubernetes.stamp" "$want" kube-apiserver kube-controller-manager kubectl
  fi

  ld="-s -w"
  want=$(recipe etcd "$ETCD_VERSION" "$ld")
  if is_current "$VERSION_DIR/.etcd.stamp" "$want" etcd; then
    log "etcd $ETCD_VERSION is up to date"
  else
    timed "etcd $ETCD_VERSION" "$VERSION_DIR/logs/build-etcd.log" \
      in_dir "$WRAPPER_DIR/etcd" go build -p "$GO_P" \
        -trimpath -ldflags "$ld" -o "$scratch/etcd" go.etcd.io/etcd/server/v3
    install_bins "$scratch" "$VERSION_DIR/.etcd.stamp" "$want" etcd
  fi

  # helm's go.mod has no replace directives, so plain `go install` works. Its
  # checksums are verified against the checksum database like any module.
  ld=$(helm_ldflags)
  want=$(recipe helm "$HELM_VERSION" "$ld")
  if is_current "$VERSION_DIR/.helm.stamp" "$want" helm; then
    log "helm $HELM_VERSION is up to date"
  else
    timed "helm $HELM_VERSION" "$VERSION_DIR/logs/build-helm.log" \
      in_dir "$scratch" env GOBIN="$scratch" GOFLAGS="${GOFLAGS/-mod=readonly/}" go install -p "$GO_P" \
        -trimpath -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    install_bins "$scratch" "$VERSION_DIR/.helm.stamp" "$want" helm
  fi

  log "binaries in $BIN_DIR ($(( $(date +%s) - all_start ))s)"
}

# ============================================================================
# up / down / status
# ============================================================================

pid_of() { [[ -f "$RUN_DIR/$1.pid" ]] && cat "$RUN_DIR/$1.pid"; }

# Is PID alive and still running BINARY (guards against pid reuse)?
pid_runs() {
  local pid=$1 bin=$2 exe
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 0 # no /proc: trust kill -0
  [[ "$exe" == "$BIN_DIR/$bin" || "$exe" == "$BIN_DIR/$bin (deleted)" ]]
}

component_running() { local pid; pid=$(pid_of "$1") && pid_runs "$pid" "$1"; }

stop_component() {
  local name=$1 pid i
  pid=$(pid_of "$name") || return 0
  if pid_runs "$pid" "$name"; then
    kill -TERM "$pid" 2>/dev/null || true
    for (( i = 0; i < 100; i++ )); do
      pid_runs "$pid" "$name" || break
      sleep 0.1
    done
    if pid_runs "$pid" "$name"; then
      log "$name (pid $pid) ignored SIGTERM for 10s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for (( i = 0; i < 50; i++ )); do pid_runs "$pid" "$name" || break; sleep 0.1; done
    fi
    if pid_runs "$pid" "$name"; then
      log "error: could not stop $name (pid $pid)"
      return 1
    fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$RUN_DIR/$name.pid"
}

stop_all() { # stops every component it can; fails if one could not be stopped
  local i rc=0
  for (( i = ${#COMPONENTS[@]} - 1; i >= 0; i-- )); do
    stop_component "${COMPONENTS[i]}" || rc=1
  done
  return "$rc"
}

# Free loopback TCP ports. All sockets stay bound until every port is chosen,
# so the ports are distinct; a port can still be taken by another process
# before the component binds it, which `up` detects and retries.
free_ports() {
  local n=$1 out ports=() p
  if command -v python3 >/dev/null 2>&1 && out=$(python3 - "$n" 2>/dev/null <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
  ) && [[ "$out" =~ ^[0-9]+( [0-9]+)*$ ]]; then
    echo "$out"
    return 0
  fi
  # Fallback: random ports below the usual ephemeral range that nothing
  # answers on.
  while (( ${#ports[@]} < n )); do
    p=$(( 20000 + RANDOM % 12000 ))
    [[ " ${ports[*]} " == *" $p "* ]] && continue
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
    ports+=("$p")
  done
  echo "${ports[*]}"
}

# --- PKI ---------------------------------------------------------------------
# A CA made for this run only, ECDSA P-256 leaf certificates valid for 7 days,
# and an RSA key pair for signing service-account tokens. Keys are 0600 in a
# 0700 directory.
issue_cert() { # issue_cert NAME SUBJECT EXTENSIONS
  local name=$1 subj=$2 ext=$3 pki="$RUN_DIR/pki"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" 2>/dev/null
  printf '%s\n' "$ext" > "$pki/$name.ext"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 7 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$pki/$name.ext"
}

make_pki() {
  local pki="$RUN_DIR/pki"
  mkdir -p "$pki"
  chmod 700 "$pki"
  (
    umask 077
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 7 -sha256 \
      -subj "/CN=mlflow-secrets-testenv-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    local server="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth"
    local client="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    local both="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth"
    issue_cert apiserver "/CN=kube-apiserver" "$server
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    # etcd serves and talks to itself with the same certificate.
    issue_cert etcd "/CN=etcd" "$both
subjectAltName=IP:127.0.0.1,DNS:localhost"
    issue_cert apiserver-etcd-client "/CN=kube-apiserver-etcd-client" "$client"
    issue_cert admin "/O=system:masters/CN=admin" "$client"
    issue_cert kube-controller-manager "/CN=system:kube-controller-manager" "$client"
    issue_cert kube-controller-manager-serving "/CN=kube-controller-manager" "$server
subjectAltName=IP:127.0.0.1,DNS:localhost"
    # The client certificate kube-apiserver presents to admission webhooks
    # (AdmissionConfiguration kubeConfigFile, below), from a CA of its own:
    # `--webhook-client-ca pki/webhook-client-ca.crt` then admits the API
    # server and no other cluster client.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout "$pki/webhook-client-ca.key" -out "$pki/webhook-client-ca.crt" -days 7 -sha256 \
      -subj "/CN=mlflow-secrets-testenv-webhook-client-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout "$pki/webhook-client.key" -subj "/CN=kube-apiserver-webhook-client" \
      -out "$pki/webhook-client.csr" 2>/dev/null
    printf '%s\n' "$client" > "$pki/webhook-client.ext"
    openssl x509 -req -in "$pki/webhook-client.csr" -CA "$pki/webhook-client-ca.crt" \
      -CAkey "$pki/webhook-client-ca.key" -CAcreateserial -days 7 -sha256 \
      -extfile "$pki/webhook-client.ext" -out "$pki/webhook-client.crt" 2>/dev/null
    rm -f "$pki/webhook-client.csr" "$pki/webhook-client.ext"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key" 2>/dev/null
    openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  ) || die "generating certificates with openssl failed"
}

# kube-apiserver's AdmissionConfiguration: for every webhook ("*"), present
# the client certificate signed by pki/webhook-client-ca.crt, so tests can
# run the webhook with --webhook-client-ca (docs/design.md §8, "The caller").
write_admission_config() {
  local pki="$RUN_DIR/pki"
  (
    umask 077
    cat > "$RUN_DIR/webhook-client.kubeconfig" <<EOF
apiVersion: v1
kind: Config
users:
- name: "*"
  user:
    client-certificate: $pki/webhook-client.crt
    client-key: $pki/webhook-client.key
EOF
    cat > "$RUN_DIR/admission-config.yaml" <<EOF
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: MutatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: $RUN_DIR/webhook-client.kubeconfig
- name: ValidatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: $RUN_DIR/webhook-client.kubeconfig
EOF
  )
}

write_kubeconfig() { # write_kubeconfig FILE USER
  local file=$1 user=$2 pki="$RUN_DIR/pki"
  (
    umask 077
    cat > "$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 < "$pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 < "$pki/$user.crt")
    client-key-data: $(base64 -w0 < "$pki/$user.key")
contexts:
- name: testenv
  context:
    cluster: testenv
    user: $user
    namespace: default
current-context: testenv
EOF
  )
}

start_component() { # start_component NAME ARGS...
  local name=$1; shift
  # Own session: not killed by a terminal's Ctrl-C aimed at the caller, and
  # never holding the caller's stdout open (callers read `up` to EOF).
  setsid "$BIN_DIR/$name" "$@" </dev/null >"$RUN_DIR/logs/$name.log" 2>&1 &
  echo $! > "$RUN_DIR/$name.pid"
}

fail_component() { # fail_component NAME MESSAGE
  local name=$1 msg=$2
  log "$msg"
  if [[ -f "$RUN_DIR/logs/$name.log" ]]; then
    log "last lines of $RUN_DIR/logs/$name.log:"
    tail -n 30 "$RUN_DIR/logs/$name.log" | sed 's/^/    /' >&2 || true
  fi
  return 1
}

wait_for() { # wait_for NAME CHECK-CMD...: poll until CHECK succeeds, NAME dies or time runs out
  local name=$1 deadline; shift
  deadline=$(( $(date +%s) + WAIT_TIMEOUT ))
  while ! "$@" >/dev/null 2>&1; do
    component_running "$name" || { fail_component "$name" "$name exited during start-up"; return 1; }
    (( $(date +%s) < deadline )) || { fail_component "$name" "$name not ready after ${WAIT_TIMEOUT}s"; return 1; }
    sleep 0.25
  done
}

# shellcheck disable=SC2317 # called indirectly
etcd_healthy() {
  curl -sf --max-time 2 --cacert "$RUN_DIR/pki/ca.crt" \
    --cert "$RUN_DIR/pki/apiserver-etcd-client.crt" --key "$RUN_DIR/pki/apiserver-etcd-client.key" \
    "https://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'
}

# shellcheck disable=SC2317 # called indirectly
apiserver_ready() {
  [[ "$(curl -sf --max-time 2 --cacert "$RUN_DIR/pki/ca.crt" \
    --cert "$RUN_DIR/pki/admin.crt" --key "$RUN_DIR/pki/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT/readyz")" == ok ]]
}

# shellcheck disable=SC2317 # called indirectly
kcm_healthy() {
  # /healthz is in kube-controller-manager's always-allowed paths.
  [[ "$(curl -sf --max-time 2 --cacert "$RUN_DIR/pki/ca.crt" "https://127.0.0.1:$KCM_PORT/healthz")" == ok ]]
}

start_all() {
  local ports
  read -r ETCD_PORT ETCD_PEER_PORT APISERVER_PORT KCM_PORT <<<"$(free_ports 4)"
  cat > "$RUN_DIR/ports" <<EOF
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
APISERVER_PORT=$APISERVER_PORT
KCM_PORT=$KCM_PORT
EOF
  local pki="$RUN_DIR/pki"

  start_component etcd \
    --name=testenv \
    --data-dir="$RUN_DIR/data/etcd" \
    --listen-client-urls="https://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls="https://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="https://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="https://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="testenv=https://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster-state=new \
    --cert-file="$pki/etcd.crt" --key-file="$pki/etcd.key" \
    --trusted-ca-file="$pki/ca.crt" --client-cert-auth=true \
    --peer-cert-file="$pki/etcd.crt" --peer-key-file="$pki/etcd.key" \
    --peer-trusted-ca-file="$pki/ca.crt" --peer-client-cert-auth=true \
    --unsafe-no-fsync=true \
    --snapshot-count=10000 \
    --log-level=warn
  wait_for etcd etcd_healthy || return 1

  # Settings follow controller-runtime's envtest, plus TLS to etcd, a
  # service-account signing key, RBAC and the ServiceAccount admission plugin
  # (envtest disables it; here kube-controller-manager creates the accounts).
  write_admission_config
  start_component kube-apiserver \
    --advertise-address=127.0.0.1 \
    --bind-address=127.0.0.1 \
    --secure-port="$APISERVER_PORT" \
    --cert-dir="$RUN_DIR/data/apiserver-certs" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --admission-control-config-file="$RUN_DIR/admission-config.yaml" \
    --etcd-servers="https://127.0.0.1:$ETCD_PORT" \
    --etcd-cafile="$pki/ca.crt" \
    --etcd-certfile="$pki/apiserver-etcd-client.crt" --etcd-keyfile="$pki/apiserver-etcd-client.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key" \
    --authorization-mode=RBAC \
    --anonymous-auth=true \
    --allow-privileged=true \
    --endpoint-reconciler-type=none \
    --profiling=false \
    --v=1
  wait_for kube-apiserver apiserver_ready || return 1

  write_kubeconfig "$RUN_DIR/kube-controller-manager.kubeconfig" kube-controller-manager
  start_component kube-controller-manager \
    --kubeconfig="$RUN_DIR/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$RUN_DIR/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$RUN_DIR/kube-controller-manager.kubeconfig" \
    --authentication-skip-lookup=true \
    --client-ca-file="$pki/ca.crt" \
    --bind-address=127.0.0.1 \
    --secure-port="$KCM_PORT" \
    --tls-cert-file="$pki/kube-controller-manager-serving.crt" \
    --tls-private-key-file="$pki/kube-controller-manager-serving.key" \
    --controllers="$KCM_CONTROLLERS" \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$pki/sa.key" \
    --root-ca-file="$pki/ca.crt" \
    --leader-elect=false \
    --profiling=false \
    --v=1
  wait_for kube-controller-manager kcm_healthy || return 1
}

cmd_up() {
  need openssl curl base64 setsid
  local name started=0 attempt start
  for name in "${COMPONENTS[@]}"; do
    [[ -x "$BIN_DIR/$name" ]] || die "$BIN_DIR/$name is missing: run '$0 build' first"
  done
  if [[ -d "$RUN_DIR" ]]; then
    for name in "${COMPONENTS[@]}"; do
      component_running "$name" && started=1
    done
    (( started == 0 )) || die "a control plane is already up in $RUN_DIR (kubeconfig: $RUN_DIR/kubeconfig); run '$0 down' first"
    log "removing stale run directory $RUN_DIR"
    rm -rf "$RUN_DIR"
  fi
  start=$(date +%s)
  mkdir -p "$RUN_DIR"
  chmod 700 "$RUN_DIR"
  # If `up` fails or is interrupted, stop whatever it had started.
  trap 'rc=$?; if (( rc != 0 )); then log "up failed; stopping what was started (logs kept in $RUN_DIR/logs)"; stop_all || true; fi' EXIT
  trap 'exit 130' INT TERM

  make_pki
  # Components talk to loopback only; never through a proxy from the caller's environment.
  export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"
  for attempt in 1 2 3; do
    rm -rf "$RUN_DIR/data" "$RUN_DIR/logs"
    mkdir -p "$RUN_DIR/data" "$RUN_DIR/logs"
    if start_all; then break; fi
    stop_all || die "could not stop the components of a failed start"
    # A picked port taken by someone else before we bound it: pick again.
    if (( attempt < 3 )) && grep -qs 'address already in use' "$RUN_DIR"/logs/*.log; then
      log "a port was taken meanwhile; retrying with new ports"
      continue
    fi
    die "the control plane did not start; logs are in $RUN_DIR/logs"
  done
  log "control plane $KUBE_VERSION up in $(( $(date +%s) - start ))s (run dir $RUN_DIR)"
  # The admin kubeconfig is written last: its presence means "ready".
  write_kubeconfig "$RUN_DIR/kubeconfig.tmp" admin
  mv "$RUN_DIR/kubeconfig.tmp" "$RUN_DIR/kubeconfig"
  echo "$RUN_DIR/kubeconfig"
}

cmd_down() {
  [[ -d "$RUN_DIR" ]] || { log "nothing to stop: $RUN_DIR does not exist"; return 0; }
  stop_all || die "some components could not be stopped; $RUN_DIR is left in place"
  # Remove data and secrets; keep the logs of the last run for debugging.
  rm -rf "$RUN_DIR/data" "$RUN_DIR/pki" "$RUN_DIR"/*.kubeconfig "$RUN_DIR/kubeconfig" \
    "$RUN_DIR/kubeconfig.tmp" "$RUN_DIR/ports"
  log "down; logs of the last run are in $RUN_DIR/logs"
}

cmd_status() {
  local name pid all=0
  for name in "${COMPONENTS[@]}"; do
    pid=$(pid_of "$name" || true)
    if [[ -n "$pid" ]] && pid_runs "$pid" "$name"; then
      echo "$name: running (pid $pid)"
    else
      echo "$name: stopped"
      all=1
    fi
  done
  [[ -f "$RUN_DIR/ports" ]] && sed 's/^/  /' "$RUN_DIR/ports"
  [[ -f "$RUN_DIR/kubeconfig" ]] && echo "kubeconfig: $RUN_DIR/kubeconfig"
  return "$all"
}

cmd_env() {
  # $PATH stays literal: it expands where the line is evaluated.
  # shellcheck disable=SC2016
  printf 'export KUBECONFIG=%q PATH=%q:$PATH\n' "$RUN_DIR/kubeconfig" "$BIN_DIR"
}

# Pids of processes running one of our binaries with this run directory in
# their command line.
leftover_pids() {
  local proc exe out=()
  for proc in /proc/[0-9]*; do
    exe=$(readlink "$proc/exe" 2>/dev/null) || continue
    [[ "$exe" == "$BIN_DIR/"* ]] || continue
    [[ "$(tr '\0' ' ' < "$proc/cmdline" 2>/dev/null)" == *"$RUN_DIR"* ]] || continue
    out+=("${proc#/proc/}")
  done
  echo "${out[*]}"
}

# up, check, down, and prove that nothing of it is left running. Runs in its
# own run directory, so it does not disturb a control plane already up.
cmd_selftest() {
  local dir pids=() name pid leftover
  dir=$(mktemp -d "${TMPDIR:-/tmp}/mlflow-secrets-testenv-selftest.XXXXXX")
  export MLFLOW_SECRETS_TESTENV_DIR="$dir/run"
  RUN_DIR="$dir/run"
  # shellcheck disable=SC2064
  trap "'$0' down >/dev/null 2>&1 || true; rm -rf '$dir'" EXIT
  local kubeconfig
  kubeconfig=$("$0" up | tail -n1)
  for name in "${COMPONENTS[@]}"; do pids+=("$(pid_of "$name")"); done
  "$BIN_DIR/kubectl" --kubeconfig "$kubeconfig" get --raw /readyz >/dev/null \
    || die "selftest: /readyz failed"
  "$0" down
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null && die "selftest: pid $pid is still running after down"
  done
  # No process of ours may be left on this run directory either.
  leftover=$(leftover_pids)
  [[ -z "$leftover" ]] || die "selftest: processes still running on $RUN_DIR: $leftover"
  [[ ! -e "$RUN_DIR/data" ]] || die "selftest: $RUN_DIR/data still exists after down"
  echo "selftest: ok (${#pids[@]} processes started and stopped)"
}

main() {
  case "${1:-}" in
    build) cmd_build ;;
    up) cmd_up ;;
    down) cmd_down ;;
    env) cmd_env ;;
    bin-dir) echo "$BIN_DIR" ;;
    status) cmd_status ;;
    selftest) cmd_selftest ;;
    *)
      sed -n '4,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
      exit 2
      ;;
  esac
}

# On one line: bash reads a script as it runs it, so nothing after this line
# is read, and editing the file while it runs cannot break a running build.
main "$@"; exit
