// Package deploy_test checks the deployment files of deploy/ and the
// Dockerfile: the Kubernetes manifests decode strictly into the API types (a
// misspelt field fails), refer only to objects they define, and keep the
// daemon's probes out of the database's readiness; the alert rules pass
// promtool and their own unit tests, and agree with the Prometheus Operator
// copy; the dashboard parses and covers the daemon. It is a test-only
// package, so the Kubernetes modules stay out of the binary.
package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// daemonContainer and daemonPort name the daemon's container and its HTTP
// port in every manifest: the PodMonitor and deploy/prometheus/scrape.yml
// find the daemon by that port name.
const (
	daemonContainer = "mvrefresher"
	daemonPort      = "mvrefresher"
)

// kinds are the kinds the manifests may use, each with its apiVersion and the
// type it decodes into.
var kinds = map[string]struct {
	apiVersion string
	new        func() any
}{
	"Secret":         {"v1", func() any { return &corev1.Secret{} }},
	"ConfigMap":      {"v1", func() any { return &corev1.ConfigMap{} }},
	"Service":        {"v1", func() any { return &corev1.Service{} }},
	"StatefulSet":    {"apps/v1", func() any { return &appsv1.StatefulSet{} }},
	"Deployment":     {"apps/v1", func() any { return &appsv1.Deployment{} }},
	"PodMonitor":     {"monitoring.coreos.com/v1", func() any { return &monitoringv1.PodMonitor{} }},
	"PrometheusRule": {"monitoring.coreos.com/v1", func() any { return &monitoringv1.PrometheusRule{} }},
}

// kustomization is the part of kustomize's Kustomization the bases use.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
	} `json:"images,omitempty"`
}

// base is one kustomize base: its objects, decoded.
type base struct {
	dir     string
	kust    kustomization
	objects []any
}

// decodeStrict decodes YAML (or JSON) as the API server does in strict mode:
// field names match case-sensitively, and unknown or duplicate fields are
// errors.
func decodeStrict(data []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return err
	}
	strictErrs, err := kjson.UnmarshalStrict(j, v)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// loadBases decodes every kustomize base under kubernetes/, strictly.
func loadBases(t *testing.T) []base {
	t.Helper()
	kusts, err := filepath.Glob("kubernetes/*/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(kusts) < 3 {
		t.Fatalf("found %d kustomize bases, want sidecar, ha-pair and monitoring", len(kusts))
	}
	var bases []base
	for _, k := range kusts {
		b := base{dir: filepath.Dir(k)}
		if err := decodeStrict(readFile(t, k), &b.kust); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if b.kust.APIVersion != "kustomize.config.k8s.io/v1beta1" || b.kust.Kind != "Kustomization" {
			t.Errorf("%s: apiVersion %q, kind %q", k, b.kust.APIVersion, b.kust.Kind)
		}
		// Every manifest beside it is in it: none is left out of kubectl apply -k.
		files, err := filepath.Glob(filepath.Join(b.dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if name := filepath.Base(f); name != "kustomization.yaml" && !slices.Contains(b.kust.Resources, name) {
				t.Errorf("%s is not listed in %s", f, k)
			}
		}
		for _, r := range b.kust.Resources {
			b.objects = append(b.objects, decodeManifests(t, filepath.Join(b.dir, r))...)
		}
		bases = append(bases, b)
	}
	return bases
}

// decodeManifests decodes each document of a manifest file into its API
// type, refusing unknown and duplicate fields.
func decodeManifests(t *testing.T, path string) []any {
	t.Helper()
	var objects []any
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(readFile(t, path))))
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: reading document %d: %v", path, i, err)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("%s, document %d: %v", path, i, err)
		}
		if tm.Kind == "" {
			continue // only comments
		}
		kind, ok := kinds[tm.Kind]
		if !ok {
			t.Errorf("%s, document %d: kind %q has no API type here", path, i, tm.Kind)
			continue
		}
		if tm.APIVersion != kind.apiVersion {
			t.Errorf("%s, document %d: %s has apiVersion %q, want %q", path, i, tm.Kind, tm.APIVersion, kind.apiVersion)
		}
		obj := kind.new()
		if err := decodeStrict(doc, obj); err != nil {
			t.Errorf("%s, document %d (%s): %v", path, i, tm.Kind, err)
			continue
		}
		objects = append(objects, obj)
	}
	if len(objects) == 0 {
		t.Errorf("%s: no objects", path)
	}
	return objects
}

// workload is a pod template with what runs it and selects its pods.
type workload struct {
	name     string
	selector *metav1.LabelSelector
	template corev1.PodTemplateSpec
}

func workloads(objects []any) []workload {
	var ws []workload
	for _, o := range objects {
		switch o := o.(type) {
		case *appsv1.StatefulSet:
			ws = append(ws, workload{"StatefulSet " + o.Name, o.Spec.Selector, o.Spec.Template})
		case *appsv1.Deployment:
			ws = append(ws, workload{"Deployment " + o.Name, o.Spec.Selector, o.Spec.Template})
		}
	}
	return ws
}

// TestManifests_ApplyAsTheyAre checks each base's references: the Secrets,
// ConfigMaps and Services its pods name exist in it with the keys used,
// selectors select its pods, probes use declared ports, and the daemon's
// image is the one docs/deployment.md builds.
func TestManifests_ApplyAsTheyAre(t *testing.T) {
	image := documentedImage(t)
	for _, b := range loadBases(t) {
		secrets, configMaps, services := map[string]map[string]bool{}, map[string]bool{}, map[string]*corev1.Service{}
		for _, o := range b.objects {
			switch o := o.(type) {
			case *corev1.Secret:
				keys := map[string]bool{}
				for k := range o.StringData {
					keys[k] = true
				}
				for k := range o.Data {
					keys[k] = true
				}
				secrets[o.Name] = keys
			case *corev1.ConfigMap:
				configMaps[o.Name] = true
			case *corev1.Service:
				services[o.Name] = o
			}
		}
		for _, o := range b.objects {
			if ss, ok := o.(*appsv1.StatefulSet); ok && services[ss.Spec.ServiceName] == nil {
				t.Errorf("%s: StatefulSet %s: serviceName %q is no Service of the base", b.dir, ss.Name, ss.Spec.ServiceName)
			}
		}
		for _, w := range workloads(b.objects) {
			where := b.dir + ": " + w.name
			checkPod(t, where, w.template.Spec, secrets, configMaps, image)
			s, err := metav1.LabelSelectorAsSelector(w.selector)
			if err != nil {
				t.Fatalf("%s: selector: %v", where, err)
			}
			if !s.Matches(labels.Set(w.template.Labels)) {
				t.Errorf("%s: its selector does not select its pods", where)
			}
		}
		for name, s := range services {
			if !slices.ContainsFunc(workloads(b.objects), func(w workload) bool {
				return labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(w.template.Labels))
			}) {
				t.Errorf("%s: Service %s selects no pod of the base", b.dir, name)
			}
		}
		for _, img := range b.kust.Images {
			if ref := img.Name + ":" + img.NewTag; img.NewName != "" || ref != image {
				t.Errorf("%s/kustomization.yaml: images sets %s (newName %q), want docs/deployment.md's %s", b.dir, ref, img.NewName, image)
			}
		}
	}
}

// checkPod checks one pod template's references and probes.
func checkPod(t *testing.T, where string, pod corev1.PodSpec, secrets map[string]map[string]bool, configMaps map[string]bool, image string) {
	t.Helper()
	for _, v := range pod.Volumes {
		if v.ConfigMap != nil && !configMaps[v.ConfigMap.Name] {
			t.Errorf("%s: volume %s: no ConfigMap %s in the base", where, v.Name, v.ConfigMap.Name)
		}
		if v.Secret != nil && secrets[v.Secret.SecretName] == nil {
			t.Errorf("%s: volume %s: no Secret %s in the base", where, v.Name, v.Secret.SecretName)
		}
	}
	daemons := 0
	for _, c := range pod.Containers {
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil && secrets[e.SecretRef.Name] == nil {
				t.Errorf("%s: container %s: no Secret %s in the base", where, c.Name, e.SecretRef.Name)
			}
			if e.ConfigMapRef != nil && !configMaps[e.ConfigMapRef.Name] {
				t.Errorf("%s: container %s: no ConfigMap %s in the base", where, c.Name, e.ConfigMapRef.Name)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil && !secrets[r.Name][r.Key] {
				t.Errorf("%s: container %s: env %s: no key %s in a Secret %s of the base", where, c.Name, e.Name, r.Key, r.Name)
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil && !configMaps[r.Name] {
				t.Errorf("%s: container %s: env %s: no ConfigMap %s in the base", where, c.Name, e.Name, r.Name)
			}
		}
		ports := map[string]bool{}
		for _, p := range c.Ports {
			ports[p.Name] = true
		}
		for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
			if p != nil && p.HTTPGet != nil && p.HTTPGet.Port.StrVal != "" && !ports[p.HTTPGet.Port.StrVal] {
				t.Errorf("%s: container %s: a probe uses port %q, which the container does not declare", where, c.Name, p.HTTPGet.Port.StrVal)
			}
		}
		if c.Name != daemonContainer {
			if !strings.Contains(strings.SplitN(c.Image, "/", 2)[0], ".") {
				t.Errorf("%s: container %s: image %q is not fully qualified", where, c.Name, c.Image)
			}
			continue
		}
		daemons++
		if c.Image != image {
			t.Errorf("%s: the daemon's image is %q, docs/deployment.md builds %q", where, c.Image, image)
		}
		if !ports[daemonPort] {
			t.Errorf("%s: the daemon declares no port named %q, which monitoring scrapes", where, daemonPort)
		}
		if c.LivenessProbe == nil {
			t.Errorf("%s: the daemon has no liveness probe", where)
		}
		// A pod is ready only when all its containers are: a sidecar's
		// readiness probe would take the database out of its Services
		// whenever the daemon is not streaming.
		if len(pod.Containers) > 1 && c.ReadinessProbe != nil {
			t.Errorf("%s: the daemon is a sidecar with a readiness probe: the whole pod would turn unready when it is not streaming", where)
		}
	}
	if daemons != 1 {
		t.Errorf("%s: %d containers named %s, want 1", where, daemons, daemonContainer)
	}
}

// documentedImage is the image tag the build command of docs/deployment.md gives.
func documentedImage(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile("docker build [^`\n]*-t (\\S+) \\.").FindSubmatch(readFile(t, "../docs/deployment.md"))
	if m == nil {
		t.Fatal("docs/deployment.md: no `docker build ... -t IMAGE .` command")
	}
	return string(m[1])
}

// ruleFile is a Prometheus rule file.
type ruleFile struct {
	Groups []monitoringv1.RuleGroup `json:"groups"`
}

// TestAlerts_ConsistentAndDocumented checks that the rule file decodes
// strictly, matches the PrometheusRule, that every alert has a severity, a
// summary, a description and a runbook link to a heading of
// docs/metrics-and-alerts.md, and that
// MvrefresherDown selects the job the shipped scrape configurations set.
func TestAlerts_ConsistentAndDocumented(t *testing.T) {
	var rules ruleFile
	if err := decodeStrict(readFile(t, "prometheus/alerts.yml"), &rules); err != nil {
		t.Fatalf("prometheus/alerts.yml: %v", err)
	}
	var operatorRules *monitoringv1.PrometheusRule
	var podMonitor *monitoringv1.PodMonitor
	for _, b := range loadBases(t) {
		for _, o := range b.objects {
			switch o := o.(type) {
			case *monitoringv1.PrometheusRule:
				operatorRules = o
			case *monitoringv1.PodMonitor:
				podMonitor = o
			}
		}
	}
	if operatorRules == nil || podMonitor == nil {
		t.Fatal("no PrometheusRule or PodMonitor in the kustomize bases")
	}
	if !reflect.DeepEqual(rules.Groups, operatorRules.Spec.Groups) {
		t.Error("the PrometheusRule's groups differ from prometheus/alerts.yml")
	}

	anchors := headingAnchors(t, "../docs/metrics-and-alerts.md")
	const runbooks = "https://github.com/mvrefresher/mvrefresher/blob/main/docs/metrics-and-alerts.md#"
	var downExpr string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if r.Alert == "MvrefresherDown" {
				downExpr = r.Expr.String()
			}
			if s := r.Labels["severity"]; !slices.Contains([]string{"critical", "warning", "info"}, s) {
				t.Errorf("%s: severity %q", r.Alert, s)
			}
			for _, a := range []string{"summary", "description"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: no %s", r.Alert, a)
				}
			}
			anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], runbooks)
			if !ok || !anchors[anchor] {
				t.Errorf("%s: runbook_url %q is no heading of docs/metrics-and-alerts.md", r.Alert, r.Annotations["runbook_url"])
			}
		}
	}

	// The job label MvrefresherDown selects is the one the PodMonitor and
	// the plain scrape configuration set.
	var job string
	for _, ep := range podMonitor.Spec.PodMetricsEndpoints {
		if ep.Port == nil || *ep.Port != daemonPort {
			t.Errorf("PodMonitor: endpoint port %v, want %q", ep.Port, daemonPort)
		}
		for _, rl := range ep.RelabelConfigs {
			if rl.TargetLabel == "job" && rl.Replacement != nil {
				job = *rl.Replacement
			}
		}
	}
	if job == "" {
		t.Fatal("the PodMonitor does not set the job label")
	}
	type relabel struct {
		SourceLabels []string `json:"source_labels"`
		Regex        string   `json:"regex"`
		Action       string   `json:"action"`
	}
	var scrape struct {
		ScrapeConfigs []struct {
			JobName        string    `json:"job_name"`
			RelabelConfigs []relabel `json:"relabel_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal(readFile(t, "prometheus/scrape.yml"), &scrape); err != nil {
		t.Fatalf("prometheus/scrape.yml: %v", err)
	}
	if len(scrape.ScrapeConfigs) != 1 || scrape.ScrapeConfigs[0].JobName != job {
		t.Errorf("prometheus/scrape.yml: want one scrape config, job_name %q", job)
	} else if !slices.ContainsFunc(scrape.ScrapeConfigs[0].RelabelConfigs, func(r relabel) bool {
		return r.Action == "keep" && r.Regex == daemonPort && slices.Equal(r.SourceLabels, []string{"__meta_kubernetes_pod_container_port_name"})
	}) {
		t.Errorf("prometheus/scrape.yml: does not keep the container ports named %q", daemonPort)
	}
	if !strings.Contains(downExpr, `up{job="`+job+`"}`) {
		t.Errorf("MvrefresherDown (%s) does not select job %q, which the scrape configurations set", downExpr, job)
	}
}

// TestAlerts_Promtool runs promtool check rules, and the rules' unit tests
// (prometheus/alerts_test.yml: the cases the alerts must and must not fire
// for). Without promtool (Debian's prometheus package) it is skipped, except
// in CI, which installs it.
func TestAlerts_Promtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool not found: CI installs it (Debian package prometheus)")
		}
		t.Skip("promtool not found (Debian package prometheus)")
	}
	for _, args := range [][]string{
		{"check", "rules", "prometheus/alerts.yml"},
		{"test", "rules", "prometheus/alerts_test.yml"},
	} {
		if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// dashboard is the part of the Grafana dashboard model the file uses;
// decoding refuses any other field, so a misspelt one fails.
type dashboard struct {
	Title         string   `json:"title"`
	UID           string   `json:"uid"`
	SchemaVersion int      `json:"schemaVersion"`
	Version       int      `json:"version"`
	Refresh       string   `json:"refresh"`
	Tags          []string `json:"tags"`
	Time          struct {
		From string `json:"from"`
		To   string `json:"to"`
	} `json:"time"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Label      string          `json:"label"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource json.RawMessage `json:"datasource,omitempty"`
			Definition string          `json:"definition,omitempty"`
			Refresh    int             `json:"refresh,omitempty"`
			IncludeAll bool            `json:"includeAll,omitempty"`
			Multi      bool            `json:"multi,omitempty"`
			AllValue   string          `json:"allValue,omitempty"`
			Sort       int             `json:"sort,omitempty"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID         int    `json:"id"`
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource"`
		GridPos struct {
			X int `json:"x"`
			Y int `json:"y"`
			W int `json:"w"`
			H int `json:"h"`
		} `json:"gridPos"`
		FieldConfig json.RawMessage `json:"fieldConfig"`
		Targets     []struct {
			RefID        string `json:"refId"`
			Expr         string `json:"expr"`
			LegendFormat string `json:"legendFormat"`
		} `json:"targets"`
	} `json:"panels"`
}

// TestDashboard_FiltersAndPanels checks that the dashboard decodes strictly,
// has job, instance and view variables that every query applies, and has
// panels for missed staleness targets and visibility waits.
func TestDashboard_FiltersAndPanels(t *testing.T) {
	var d dashboard
	if err := decodeStrict(readFile(t, "grafana/mvrefresher.json"), &d); err != nil {
		t.Fatalf("grafana/mvrefresher.json: %v", err)
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	for _, v := range []string{"datasource", "job", "instance", "view"} {
		if !vars[v] {
			t.Errorf("no template variable %q", v)
		}
	}
	ids := map[int]bool{}
	var exprs []string
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
			// Every query is limited to the daemon's job and the chosen
			// instances (the process metrics of any other job included);
			// per-view series to the chosen views.
			for _, filter := range []string{`job=~"$job"`, `instance=~"$instance"`} {
				if !strings.Contains(tg.Expr, filter) {
					t.Errorf("panel %q: %s has no %s", p.Title, tg.Expr, filter)
				}
			}
			if strings.Contains(tg.LegendFormat, "{{view}}") && !strings.Contains(tg.Expr, `view=~"$view"`) {
				t.Errorf("panel %q: %s is per view but has no view=~\"$view\"", p.Title, tg.Expr)
			}
		}
	}
	for _, metric := range []string{"mvrefresher_staleness_target_missed_total", "mvrefresher_visibility_waits_total", "process_cpu_seconds_total"} {
		if !slices.ContainsFunc(exprs, func(e string) bool { return strings.Contains(e, metric) }) {
			t.Errorf("no panel shows %s", metric)
		}
	}
}

// TestDockerfile_QualifiedImages checks that every base image names its
// registry: podman and buildah refuse short names by default.
func TestDockerfile_QualifiedImages(t *testing.T) {
	froms := 0
	for _, line := range strings.Split(string(readFile(t, "../Dockerfile")), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.EqualFold(f[0], "FROM") {
			continue
		}
		froms++
		if registry, _, ok := strings.Cut(f[1], "/"); !ok || !strings.Contains(registry, ".") {
			t.Errorf("Dockerfile: FROM %s: not a fully qualified image name", f[1])
		}
	}
	if froms == 0 {
		t.Error("Dockerfile: no FROM")
	}
}
