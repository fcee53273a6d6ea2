// Package kubernetes_test checks the Kubernetes deployment of gamemodes:
// the kustomize base and the example overlay are built in-process with
// kustomize, every object is strictly decoded against the Kubernetes API
// types (an unknown or misplaced field fails), each container's arguments
// and GAMEMODES_* environment are parsed with the binary's own flag set,
// probes must point at the routes every role serves, and every metric the
// autoscalers read must be one the binary exports (deploy/metrics.txt, which
// a test of the main module scrapes from a running binary). It is a module
// of its own because kustomize and the Kubernetes API types are heavy.
package kubernetes_test

import (
	"fmt"
	"net"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/adapters/httpapi"
	"github.com/gamemodes/gamemodes/cmd/gamemodes/config"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	serializerjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// stopTimeout is how long the binary gives its roles to stop after the
// drain (cmd/gamemodes: 20 s plus --drain-delay).
const stopTimeout = 20 * time.Second

// objects are the decoded objects of one kustomize build.
type objects struct {
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	pdbs        []*policyv1.PodDisruptionBudget
	policies    []*networkingv1.NetworkPolicy
	namespaces  []*corev1.Namespace
}

// build runs kustomize on dir and strictly decodes every object.
func build(t *testing.T, dir string) objects {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{appsv1.AddToScheme, corev1.AddToScheme, autoscalingv2.AddToScheme,
		policyv1.AddToScheme, networkingv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	codec := serializerjson.NewSerializerWithOptions(serializerjson.DefaultMetaFactory, scheme, scheme,
		serializerjson.SerializerOptions{Yaml: true, Strict: true})
	o := objects{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		obj, gvk, err := codec.Decode(y, nil, nil)
		if err != nil {
			t.Errorf("%s %s: %v", r.GetKind(), r.GetName(), err)
			continue
		}
		switch v := obj.(type) {
		case *appsv1.Deployment:
			o.deployments = append(o.deployments, v)
		case *corev1.Service:
			o.services = append(o.services, v)
		case *corev1.ConfigMap:
			o.configMaps[v.Name] = v
		case *corev1.Secret:
			o.secrets[v.Name] = v
		case *autoscalingv2.HorizontalPodAutoscaler:
			o.hpas = append(o.hpas, v)
		case *policyv1.PodDisruptionBudget:
			o.pdbs = append(o.pdbs, v)
		case *networkingv1.NetworkPolicy:
			o.policies = append(o.policies, v)
		case *corev1.Namespace:
			o.namespaces = append(o.namespaces, v)
		default:
			t.Errorf("%s %s: kind %s not checked here", r.GetKind(), r.GetName(), gvk)
		}
	}
	return o
}

func TestBase(t *testing.T) {
	o := build(t, "base")
	checkAll(t, o, false)
}

func TestExampleOverlay(t *testing.T) {
	o := build(t, "overlays/example")
	checkAll(t, o, true)
	if len(o.namespaces) != 1 || o.namespaces[0].Name != "gamemodes" {
		t.Errorf("namespaces %v, want gamemodes", o.namespaces)
	}
	for _, d := range o.deployments {
		if d.Namespace != "gamemodes" {
			t.Errorf("deployment %s in namespace %q", d.Name, d.Namespace)
		}
		if img := d.Spec.Template.Spec.Containers[0].Image; img != "registry.example.com/gamemodes:1.0.0" {
			t.Errorf("deployment %s image %q", d.Name, img)
		}
	}
}

// role is what the checks learned of a Deployment's container.
type role struct {
	d        *appsv1.Deployment
	cfg      config.Config
	httpPort int32
}

func checkAll(t *testing.T, o objects, withSecrets bool) {
	t.Helper()
	roles := map[string]role{}
	for _, d := range o.deployments {
		t.Run(d.Name, func(t *testing.T) {
			r := checkDeployment(t, o, d, withSecrets)
			roles[d.Name] = r
			checkDisruptionBudget(t, o, d)
			checkNetworkPolicies(t, o, r)
		})
	}
	components := map[string]bool{}
	for _, r := range roles {
		components[r.d.Spec.Template.Labels["app.kubernetes.io/component"]] = true
	}
	for _, want := range []string{config.RoleEdge, config.RoleWorker, config.RoleArchiver} {
		if !components[want] {
			t.Errorf("no Deployment runs the %s role", want)
		}
	}
	checkServices(t, o, roles)
	checkAutoscalers(t, o, roles)
}

// containerEnv resolves the container's environment: envFrom ConfigMaps,
// then env (a value from a Secret or a field gets a placeholder).
func containerEnv(t *testing.T, o objects, c corev1.Container, withSecrets bool) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			t.Errorf("envFrom %+v: only ConfigMaps are expected", from)
			continue
		}
		cm, ok := o.configMaps[from.ConfigMapRef.Name]
		if !ok {
			t.Errorf("envFrom ConfigMap %s does not exist", from.ConfigMapRef.Name)
			continue
		}
		for k, v := range cm.Data {
			env[k] = v
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			if withSecrets {
				s, ok := o.secrets[ref.Name]
				if !ok {
					t.Errorf("env %s: Secret %s does not exist", e.Name, ref.Name)
				} else if _, ok := s.StringData[ref.Key]; !ok {
					if _, ok := s.Data[ref.Key]; !ok {
						t.Errorf("env %s: Secret %s has no key %s", e.Name, ref.Name, ref.Key)
					}
				}
			}
			env[e.Name] = "from-secret"
		case e.ValueFrom.FieldRef != nil:
			env[e.Name] = "pod-" + strings.ReplaceAll(e.ValueFrom.FieldRef.FieldPath, ".", "-")
		default:
			t.Errorf("env %s: unexpected source %+v", e.Name, e.ValueFrom)
		}
	}
	return env
}

// flagOf maps GAMEMODES_<FLAG> to the flag name, as ff does.
func flagOf(env string) (string, bool) {
	rest, ok := strings.CutPrefix(env, "GAMEMODES_")
	return strings.ReplaceAll(strings.ToLower(rest), "_", "-"), ok
}

func checkDeployment(t *testing.T, o objects, d *appsv1.Deployment, withSecrets bool) role {
	t.Helper()
	spec := d.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	if len(c.Command) != 0 {
		t.Errorf("command %v overrides the image's entrypoint (gamemodes)", c.Command)
	}
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Fatalf("args %v: want serve and its flags", c.Args)
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("selector %v does not match the pod labels %v (%v)", d.Spec.Selector, d.Spec.Template.Labels, err)
	}

	// Arguments and environment, parsed as the binary parses them.
	env := containerEnv(t, o, c, withSecrets)
	var probe config.Config
	fs, _ := config.NewFlagSet("serve", &probe)
	for name, value := range env {
		flagName, ok := flagOf(name)
		if !ok {
			if name != "GOGC" && name != "GOMEMLIMIT" && name != "DATABASE_URL" {
				t.Errorf("env %s is neither a flag (GAMEMODES_<FLAG>) nor a Go runtime setting", name)
			}
			continue
		}
		if fs.Lookup(flagName) == nil {
			t.Errorf("env %s: the binary has no flag --%s", name, flagName)
		}
		t.Setenv(name, value)
	}
	cfg, err := config.Parse("serve", c.Args[1:])
	if err != nil {
		t.Fatalf("args %v with env %v: the binary refuses them: %v", c.Args, env, err)
	}
	component := d.Spec.Template.Labels["app.kubernetes.io/component"]
	if !slices.Equal(cfg.Roles, []string{component}) {
		t.Errorf("runs roles %v, labelled component %q", cfg.Roles, component)
	}
	if cfg.NATSURL == "" {
		t.Errorf("no --nats-url: the process would start an embedded NATS server")
	}
	if cfg.Replicas != 3 {
		t.Errorf("--replicas %d, want 3 (a NATS cluster)", cfg.Replicas)
	}
	if cfg.NATSUser != component || cfg.NATSPassword == "" {
		t.Errorf("NATS user %q (password set: %v), want the role's user %q", cfg.NATSUser, cfg.NATSPassword != "", component)
	}
	if component == config.RoleArchiver && cfg.PostgresURL == "" {
		t.Errorf("the archiver has no --postgres-url")
	}

	// The HTTP port and the probes on served routes.
	_, portText, err := net.SplitHostPort(cfg.HTTPAddr)
	if err != nil {
		t.Fatalf("--http-addr %q: %v", cfg.HTTPAddr, err)
	}
	port, _ := strconv.Atoi(portText)
	r := role{d: d, cfg: cfg, httpPort: int32(port)}
	if p := namedPort(c, "http"); p != r.httpPort {
		t.Errorf("container port http is %d, the process listens on %d", p, r.httpPort)
	}
	for _, pr := range []struct {
		name string
		p    *corev1.Probe
		path string
	}{
		{"startup", c.StartupProbe, httpapi.PathHealthz},
		{"liveness", c.LivenessProbe, httpapi.PathHealthz},
		{"readiness", c.ReadinessProbe, httpapi.PathReadyz},
	} {
		if pr.p == nil || pr.p.HTTPGet == nil {
			t.Errorf("no %s probe over HTTP", pr.name)
			continue
		}
		if pr.p.HTTPGet.Path != pr.path {
			t.Errorf("%s probe on %s, want %s", pr.name, pr.p.HTTPGet.Path, pr.path)
		}
		if got := resolvePort(c, pr.p.HTTPGet.Port); got != r.httpPort {
			t.Errorf("%s probe on port %v (%d), the process listens on %d", pr.name, pr.p.HTTPGet.Port.String(), got, r.httpPort)
		}
	}

	// A graceful stop outlasts the drain and the roles' stop.
	grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	if need := cfg.DrainDelay + stopTimeout; grace <= need {
		t.Errorf("terminationGracePeriodSeconds %v, want more than --drain-delay + stop (%v)", grace, need)
	}
	if component == config.RoleEdge && cfg.DrainDelay < 2*time.Second {
		t.Errorf("edge --drain-delay %v: readiness (every 2 s, 2 failures) needs at least 4 s to take it out", cfg.DrainDelay)
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[res]; !ok {
			t.Errorf("no %s request", res)
		}
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Errorf("no memory limit")
	}

	// Replicas spread over nodes.
	aa := spec.Affinity
	spread := false
	if aa != nil && aa.PodAntiAffinity != nil {
		for _, term := range aa.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			s, err := metav1.LabelSelectorAsSelector(term.PodAffinityTerm.LabelSelector)
			spread = spread || (err == nil && s.Matches(labels.Set(d.Spec.Template.Labels)) && term.PodAffinityTerm.TopologyKey != "")
		}
		for _, term := range aa.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			s, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
			spread = spread || (err == nil && s.Matches(labels.Set(d.Spec.Template.Labels)) && term.TopologyKey != "")
		}
	}
	if !spread {
		t.Errorf("no pod anti-affinity against its own pods")
	}
	return r
}

func namedPort(c corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

func resolvePort(c corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.String {
		return namedPort(c, p.StrVal)
	}
	return p.IntVal
}

func selects(t *testing.T, ls *metav1.LabelSelector, podLabels map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		t.Errorf("selector %v: %v", ls, err)
		return false
	}
	return s.Matches(labels.Set(podLabels))
}

func checkDisruptionBudget(t *testing.T, o objects, d *appsv1.Deployment) {
	t.Helper()
	n := 0
	for _, pdb := range o.pdbs {
		if selects(t, pdb.Spec.Selector, d.Spec.Template.Labels) {
			n++
			if pdb.Spec.MinAvailable != nil && pdb.Spec.MinAvailable.IntValue() >= int(*d.Spec.Replicas) {
				t.Errorf("PodDisruptionBudget %s: minAvailable %s blocks every eviction of %d replicas", pdb.Name, pdb.Spec.MinAvailable.String(), *d.Spec.Replicas)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d PodDisruptionBudgets select the pods, want 1", n)
	}
}

// allows reports whether the rule's peers and ports admit port (by number or
// by the container's port name); from reports whether the rule names peers.
func allows(c corev1.Container, ports []networkingv1.NetworkPolicyPort, port int32) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if p.Port == nil || resolvePort(c, *p.Port) == port {
			return true
		}
	}
	return false
}

func checkNetworkPolicies(t *testing.T, o objects, r role) {
	t.Helper()
	c := r.d.Spec.Template.Spec.Containers[0]
	podLabels := r.d.Spec.Template.Labels
	var denyIn, denyOut, anyIngress, monitoringIngress, natsEgress, dnsEgress, postgresEgress bool
	for _, np := range o.policies {
		if !selects(t, &np.Spec.PodSelector, podLabels) {
			continue
		}
		for _, pt := range np.Spec.PolicyTypes {
			denyIn = denyIn || pt == networkingv1.PolicyTypeIngress
			denyOut = denyOut || pt == networkingv1.PolicyTypeEgress
		}
		for _, in := range np.Spec.Ingress {
			if !allows(c, in.Ports, r.httpPort) {
				continue
			}
			if len(in.From) == 0 {
				anyIngress = true
			}
			for _, peer := range in.From {
				if peer.NamespaceSelector != nil && peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == "monitoring" {
					monitoringIngress = true
				}
			}
		}
		for _, out := range np.Spec.Egress {
			for _, peer := range out.To {
				if peer.PodSelector != nil && peer.PodSelector.MatchLabels["app.kubernetes.io/name"] == "nats" && allows(c, out.Ports, 4222) {
					natsEgress = true
				}
				if peer.PodSelector != nil && peer.PodSelector.MatchLabels["k8s-app"] == "kube-dns" && allows(c, out.Ports, 53) {
					dnsEgress = true
				}
			}
			if len(out.To) == 0 && allows(c, out.Ports, 5432) && len(out.Ports) > 0 {
				postgresEgress = true
			}
		}
	}
	component := podLabels["app.kubernetes.io/component"]
	for what, ok := range map[string]bool{
		"a default deny of ingress":          denyIn,
		"a default deny of egress":           denyOut,
		"Prometheus (monitoring) ingress":    monitoringIngress || anyIngress,
		"egress to NATS on 4222":             natsEgress,
		"egress to DNS":                      dnsEgress,
		"API ingress from anywhere (edges)":  anyIngress == (component == config.RoleEdge),
		"egress to Postgres (archiver only)": postgresEgress == (component == config.RoleArchiver),
	} {
		if !ok {
			t.Errorf("network policies: want %s", what)
		}
	}
}

func checkServices(t *testing.T, o objects, roles map[string]role) {
	t.Helper()
	for _, s := range o.services {
		var matched []role
		for _, r := range roles {
			if len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(r.d.Spec.Template.Labels)) {
				matched = append(matched, r)
			}
		}
		if len(matched) != 1 || !matched[0].cfg.Has(config.RoleEdge) {
			t.Errorf("Service %s selects %d Deployments, want the edges", s.Name, len(matched))
			continue
		}
		for _, p := range s.Spec.Ports {
			if got := resolvePort(matched[0].d.Spec.Template.Spec.Containers[0], p.TargetPort); got != matched[0].httpPort {
				t.Errorf("Service %s port %s targets %d, the edges listen on %d", s.Name, p.Name, got, matched[0].httpPort)
			}
		}
	}
	if len(o.services) == 0 {
		t.Error("no Service for the edges")
	}
}

func checkAutoscalers(t *testing.T, o objects, roles map[string]role) {
	t.Helper()
	exposed := adapterMetrics(t)
	scaled := map[string]bool{}
	for _, h := range o.hpas {
		ref := h.Spec.ScaleTargetRef
		r, ok := roles[ref.Name]
		if !ok || ref.Kind != "Deployment" {
			t.Errorf("HPA %s scales %s %s, which is not a Deployment here", h.Name, ref.Kind, ref.Name)
			continue
		}
		scaled[r.d.Spec.Template.Labels["app.kubernetes.io/component"]] = true
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
			t.Errorf("HPA %s: replicas %v..%d", h.Name, h.Spec.MinReplicas, h.Spec.MaxReplicas)
		}
		if r.cfg.Has(config.RoleWorker) && int(h.Spec.MaxReplicas) > r.cfg.Partitions {
			t.Errorf("HPA %s: maxReplicas %d exceeds the %d partitions (one owner each)", h.Name, h.Spec.MaxReplicas, r.cfg.Partitions)
		}
		c := r.d.Spec.Template.Spec.Containers[0]
		pods := false
		for _, m := range h.Spec.Metrics {
			switch m.Type {
			case autoscalingv2.ResourceMetricSourceType:
				if _, ok := c.Resources.Requests[m.Resource.Name]; !ok && m.Resource.Target.Type == autoscalingv2.UtilizationMetricType {
					t.Errorf("HPA %s: %s utilization without a %s request", h.Name, m.Resource.Name, m.Resource.Name)
				}
			case autoscalingv2.PodsMetricSourceType:
				pods = true
				if !exposed[m.Pods.Metric.Name] {
					t.Errorf("HPA %s reads %s, which prometheus-adapter does not serve (it serves %v)", h.Name, m.Pods.Metric.Name, exposed)
				}
			default:
				t.Errorf("HPA %s: metric type %s not expected", h.Name, m.Type)
			}
		}
		if r.cfg.Has(config.RoleWorker) && !pods {
			t.Errorf("HPA %s: the workers scale on no load metric of theirs", h.Name)
		}
	}
	for _, want := range []string{config.RoleEdge, config.RoleWorker} {
		if !scaled[want] {
			t.Errorf("no HPA for the %s Deployment", want)
		}
	}
}

// exportedMetrics reads deploy/metrics.txt: family name -> type.
func exportedMetrics(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("../metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) == 2 && !strings.HasPrefix(line, "#") {
			out[f[0]] = f[1]
		}
	}
	if len(out) == 0 {
		t.Fatal("deploy/metrics.txt lists no metric")
	}
	return out
}

// adapterMetrics returns the custom metrics the prometheus-adapter rules
// serve, checking that each rule reads a metric the binary exports (a
// counter where the query takes its rate).
func adapterMetrics(t *testing.T) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile("autoscaling/prometheus-adapter-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Rules struct {
			Custom []struct {
				SeriesQuery string `json:"seriesQuery"`
				Name        struct {
					Matches string `json:"matches"`
					As      string `json:"as"`
				} `json:"name"`
				MetricsQuery string `json:"metricsQuery"`
			} `json:"custom"`
		} `json:"rules"`
	}
	if err := yaml.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	exported := exportedMetrics(t)
	series := regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*`)
	out := map[string]bool{}
	for _, r := range v.Rules.Custom {
		name := series.FindString(r.SeriesQuery)
		typ, ok := exported[name]
		if !ok {
			t.Errorf("prometheus-adapter rule reads %q, which the binary does not export (deploy/metrics.txt)", name)
		}
		if strings.Contains(r.MetricsQuery, "rate(") && typ != "counter" {
			t.Errorf("prometheus-adapter rule takes the rate of %s, a %s", name, typ)
		}
		re, err := regexp.Compile(r.Name.Matches)
		if err != nil || !re.MatchString(name) {
			t.Errorf("rule name.matches %q does not match %s (%v)", r.Name.Matches, name, err)
			continue
		}
		out[re.ReplaceAllString(name, r.Name.As)] = true
	}
	if len(out) == 0 {
		t.Fatal("prometheus-adapter values serve no metric")
	}
	return out
}

func TestNATSHelmValues(t *testing.T) {
	raw, err := os.ReadFile("nats/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Config struct {
			Cluster struct {
				Enabled  bool `json:"enabled"`
				Replicas int  `json:"replicas"`
			} `json:"cluster"`
			JetStream struct {
				Enabled   bool `json:"enabled"`
				FileStore struct {
					Enabled bool `json:"enabled"`
				} `json:"fileStore"`
			} `json:"jetstream"`
			Merge map[string]any `json:"merge"`
		} `json:"config"`
		Container struct {
			Image struct {
				Tag string `json:"tag"`
			} `json:"image"`
			Env map[string]any `json:"env"`
		} `json:"container"`
	}
	if err := yaml.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if !v.Config.Cluster.Enabled || v.Config.Cluster.Replicas != 3 {
		t.Errorf("cluster %+v, want enabled with 3 replicas", v.Config.Cluster)
	}
	if !v.Config.JetStream.Enabled || !v.Config.JetStream.FileStore.Enabled {
		t.Errorf("jetstream %+v, want enabled on file storage", v.Config.JetStream)
	}
	if v.Config.Merge["00$include"] != "auth.conf" {
		t.Errorf("config.merge does not include auth.conf (nats/config): %v", v.Config.Merge)
	}
	// The server version of the chart's image is the one the project tests with.
	gomod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`github.com/nats-io/nats-server/v2 v(\S+)`).FindSubmatch(gomod)
	if m == nil || !strings.HasPrefix(v.Container.Image.Tag, string(m[1])+"-") {
		t.Errorf("image tag %q, want the tested nats-server %s", v.Container.Image.Tag, m)
	}
	// Every password auth.conf reads comes from the Secret the overlay makes.
	auth, err := os.ReadFile("../../nats/config/auth.conf")
	if err != nil {
		t.Fatal(err)
	}
	secrets := build(t, "overlays/example").secrets
	vars := regexp.MustCompile(`\$([A-Z_]+_PASSWORD)`).FindAllSubmatch(auth, -1)
	if len(vars) == 0 {
		t.Fatal("auth.conf reads no password variable")
	}
	for _, mv := range vars {
		name := string(mv[1])
		b, _ := yaml.Marshal(v.Container.Env[name])
		var env struct {
			ValueFrom corev1.EnvVarSource `json:"valueFrom"`
		}
		err := yaml.UnmarshalStrict(b, &env)
		e := env.ValueFrom
		if err != nil || e.SecretKeyRef == nil {
			t.Errorf("container.env %s: want valueFrom.secretKeyRef (%v)", name, err)
			continue
		}
		wantKey := strings.ReplaceAll(strings.ToLower(strings.TrimSuffix(name, "_PASSWORD")), "_", "-") + "-password"
		if e.SecretKeyRef.Name != "gamemodes-nats" || e.SecretKeyRef.Key != wantKey {
			t.Errorf("container.env %s from %s/%s, want gamemodes-nats/%s", name, e.SecretKeyRef.Name, e.SecretKeyRef.Key, wantKey)
		}
		if s, ok := secrets["gamemodes-nats"]; !ok {
			t.Errorf("the overlay makes no Secret gamemodes-nats")
		} else if _, ok := s.Data[wantKey]; !ok {
			t.Errorf("Secret gamemodes-nats has no key %s", wantKey)
		}
	}
}

// TestMonitoring: the PodMonitor scrapes every role's metrics port, and the
// PrometheusRule carries exactly the groups of deploy/prometheus/alerts.yml.
func TestMonitoring(t *testing.T) {
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), "monitoring")
	if err != nil {
		t.Fatal(err)
	}
	deployments := build(t, "base").deployments
	kinds := map[string]bool{}
	for _, r := range m.Resources() {
		kinds[r.GetKind()] = true
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		switch r.GetKind() {
		case "PodMonitor":
			var pm struct {
				Spec struct {
					Selector  metav1.LabelSelector `json:"selector"`
					Endpoints []struct {
						Port string `json:"port"`
						Path string `json:"path"`
					} `json:"podMetricsEndpoints"`
				} `json:"spec"`
			}
			if err := yaml.Unmarshal(y, &pm); err != nil {
				t.Fatal(err)
			}
			for _, d := range deployments {
				if !selects(t, &pm.Spec.Selector, d.Spec.Template.Labels) {
					t.Errorf("PodMonitor does not select %s", d.Name)
				}
				for _, e := range pm.Spec.Endpoints {
					if namedPort(d.Spec.Template.Spec.Containers[0], e.Port) == 0 || e.Path != httpapi.PathMetrics {
						t.Errorf("PodMonitor endpoint %s%s is not %s's metrics", e.Port, e.Path, d.Name)
					}
				}
			}
		case "PrometheusRule":
			var pr struct {
				Spec struct {
					Groups any `json:"groups"`
				} `json:"spec"`
			}
			if err := yaml.Unmarshal(y, &pr); err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile("../prometheus/alerts.yml")
			if err != nil {
				t.Fatal(err)
			}
			var alerts struct {
				Groups any `json:"groups"`
			}
			if err := yaml.Unmarshal(raw, &alerts); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(pr.Spec.Groups, alerts.Groups) {
				t.Errorf("monitoring/prometheusrule.yaml differs from deploy/prometheus/alerts.yml: copy the groups again")
			}
		default:
			t.Errorf("unexpected %s %s", r.GetKind(), r.GetName())
		}
	}
	if !kinds["PodMonitor"] || !kinds["PrometheusRule"] {
		t.Errorf("kinds %v, want PodMonitor and PrometheusRule", kinds)
	}
}

// TestCloudNativePGExample: the example cluster creates the database the
// archiver's URL names, and its README names the Secret CloudNativePG makes.
func TestCloudNativePGExample(t *testing.T) {
	raw, err := os.ReadFile("postgres/cloudnativepg.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			Instances int `json:"instances"`
			Bootstrap struct {
				InitDB struct {
					Database string `json:"database"`
					Owner    string `json:"owner"`
				} `json:"initdb"`
			} `json:"bootstrap"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	if c.APIVersion != "postgresql.cnpg.io/v1" || c.Kind != "Cluster" || c.Spec.Instances < 1 {
		t.Errorf("%s %s with %d instances, want a postgresql.cnpg.io/v1 Cluster", c.APIVersion, c.Kind, c.Spec.Instances)
	}
	if c.Spec.Bootstrap.InitDB.Database != "gamemodes" {
		t.Errorf("database %q, want gamemodes", c.Spec.Bootstrap.InitDB.Database)
	}
	if secret := c.Metadata.Name + "-app"; !strings.Contains(string(raw), fmt.Sprintf("name: %s, key: uri", secret)) {
		t.Errorf("the example does not say to read the archiver's URL from %s (key uri)", secret)
	}
}
