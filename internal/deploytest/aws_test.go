package deploytest

import (
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.yaml.in/yaml/v3"
)

// ---------------------------------------------------------------- IAM policy

type policyDocument struct {
	Version   string            `json:"Version"`
	Statement []policyStatement `json:"Statement"`
}

type policyStatement struct {
	Sid      string   `json:"Sid,omitempty"`
	Effect   string   `json:"Effect"`
	Action   []string `json:"Action"`
	Resource []string `json:"Resource"`
}

// UnmarshalJSON accepts IAM's string-or-list Action and Resource.
func (s *policyStatement) UnmarshalJSON(b []byte) error {
	var raw struct {
		Sid, Effect      string
		Action, Resource any
		NotAction        any
		NotResource      any
		Condition        any
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if raw.NotAction != nil || raw.NotResource != nil {
		return fmt.Errorf("statement %q: NotAction/NotResource are not least privilege", raw.Sid)
	}
	var err error
	s.Sid, s.Effect = raw.Sid, raw.Effect
	if s.Action, err = stringOrList(raw.Action); err != nil {
		return fmt.Errorf("statement %q Action: %w", raw.Sid, err)
	}
	if s.Resource, err = stringOrList(raw.Resource); err != nil {
		return fmt.Errorf("statement %q Resource: %w", raw.Sid, err)
	}
	return nil
}

func stringOrList(v any) ([]string, error) {
	switch v := v.(type) {
	case string:
		return []string{v}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("want strings, got %T", e)
			}
			out = append(out, s)
		}
		sort.Strings(out)
		return out, nil
	}
	return nil, fmt.Errorf("want a string or a list of strings, got %T", v)
}

func loadIAMPolicy(t *testing.T) policyDocument {
	t.Helper()
	var p policyDocument
	if err := json.Unmarshal(readRepoFile(t, "deploy/aws/iam-policy.json"), &p); err != nil {
		t.Fatalf("iam-policy.json: %v", err)
	}
	if p.Version != "2012-10-17" || len(p.Statement) == 0 {
		t.Fatalf("iam-policy.json: Version %q with %d statements", p.Version, len(p.Statement))
	}
	return p
}

func policyActions(p policyDocument) []string {
	var out []string
	for _, s := range p.Statement {
		out = append(out, s.Action...)
	}
	sort.Strings(out)
	return out
}

// ---------------------------------------------------------------- CloudFormation YAML

// cfnValue converts a YAML node into plain Go values, turning the
// CloudFormation short-form tags into their long form: !Ref x becomes
// {"Ref": x}, !GetAtt a.b becomes {"Fn::GetAtt": [a, b]}, !Sub s becomes
// {"Fn::Sub": s}, and so on. Plain yaml.v3 decoding would fail on the tags.
func cfnValue(n *yaml.Node) (any, error) {
	var v any
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return cfnValue(n.Content[0])
	case yaml.AliasNode:
		return cfnValue(n.Alias)
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			c, err := cfnValue(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m[n.Content[i].Value] = c
		}
		v = m
	case yaml.SequenceNode:
		l := []any{}
		for _, c := range n.Content {
			e, err := cfnValue(c)
			if err != nil {
				return nil, err
			}
			l = append(l, e)
		}
		v = l
	case yaml.ScalarNode:
		if strings.HasPrefix(n.Tag, "!!") || n.Tag == "" {
			var s any
			if err := n.Decode(&s); err != nil {
				return nil, err
			}
			return s, nil
		}
		v = n.Value
	}
	if !strings.HasPrefix(n.Tag, "!") || strings.HasPrefix(n.Tag, "!!") {
		return v, nil
	}
	fn := strings.TrimPrefix(n.Tag, "!")
	switch fn {
	case "Ref", "Condition":
		return map[string]any{fn: v}, nil
	case "GetAtt":
		if s, ok := v.(string); ok {
			res, attr, found := strings.Cut(s, ".")
			if !found {
				return nil, fmt.Errorf("line %d: !GetAtt %q needs resource.attribute", n.Line, s)
			}
			return map[string]any{"Fn::GetAtt": []any{res, attr}}, nil
		}
	}
	return map[string]any{"Fn::" + fn: v}, nil
}

func loadCloudFormation(t *testing.T) map[string]any {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(readRepoFile(t, "deploy/aws/cloudformation.yaml"), &doc); err != nil {
		t.Fatalf("cloudformation.yaml: %v", err)
	}
	v, err := cfnValue(&doc)
	if err != nil {
		t.Fatalf("cloudformation.yaml: %v", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatal("cloudformation.yaml is not a mapping")
	}
	return m
}

// dig walks mapping keys; it fails the test when one is missing.
func dig(t *testing.T, v any, path ...string) any {
	t.Helper()
	for i, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("cloudformation.yaml: %s is not a mapping", strings.Join(path[:i], "."))
		}
		if v, ok = m[k]; !ok {
			t.Fatalf("cloudformation.yaml: %s missing", strings.Join(path[:i+1], "."))
		}
	}
	return v
}

func resourceOfType(t *testing.T, cfn map[string]any, typ string) (string, map[string]any) {
	t.Helper()
	var name string
	var props map[string]any
	for n, r := range dig(t, cfn, "Resources").(map[string]any) {
		if rm, ok := r.(map[string]any); ok && rm["Type"] == typ {
			if name != "" {
				t.Fatalf("cloudformation.yaml: more than one %s (%s, %s)", typ, name, n)
			}
			name = n
			props, _ = rm["Properties"].(map[string]any)
		}
	}
	if name == "" {
		t.Fatalf("cloudformation.yaml: no %s resource", typ)
	}
	return name, props
}

var subVariable = regexp.MustCompile(`\$\{([^}!]+)\}`)

// policyFromCFN turns a CloudFormation PolicyDocument into the JSON shape of
// iam-policy.json: every Fn::Sub with a variable map becomes its template
// string, after checking the map defines each ${Variable} it uses.
func policyFromCFN(t *testing.T, doc any) policyDocument {
	t.Helper()
	var conv func(v any) any
	conv = func(v any) any {
		switch v := v.(type) {
		case map[string]any:
			if sub, ok := v["Fn::Sub"]; ok && len(v) == 1 {
				switch s := sub.(type) {
				case []any:
					tmpl, _ := s[0].(string)
					vars, _ := s[1].(map[string]any)
					for _, m := range subVariable.FindAllStringSubmatch(tmpl, -1) {
						if _, ok := vars[m[1]]; !ok {
							t.Errorf("Fn::Sub %q: no value for ${%s}", tmpl, m[1])
						}
					}
					return tmpl
				case string:
					return s
				}
			}
			out := map[string]any{}
			for k, c := range v {
				out[k] = conv(c)
			}
			return out
		case []any:
			out := make([]any, len(v))
			for i, c := range v {
				out[i] = conv(c)
			}
			return out
		}
		return v
	}
	b, err := json.Marshal(conv(doc))
	if err != nil {
		t.Fatal(err)
	}
	var p policyDocument
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("instance policy in cloudformation.yaml: %v\n%s", err, b)
	}
	return p
}

func TestCloudFormationMatchesIAMPolicy(t *testing.T) {
	want := loadIAMPolicy(t)
	cfn := loadCloudFormation(t)

	_, policy := resourceOfType(t, cfn, "AWS::IAM::ManagedPolicy")
	got := policyFromCFN(t, policy["PolicyDocument"])
	if a, b := strings.Join(policyActions(got), " "), strings.Join(policyActions(want), " "); a != b {
		t.Errorf("instance policy actions differ:\n cloudformation.yaml: %s\n iam-policy.json:     %s", a, b)
	}
	if !reflect.DeepEqual(got, want) {
		gj, _ := json.MarshalIndent(got, "", "  ")
		wj, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("the instance policy in cloudformation.yaml is not iam-policy.json:\n--- cloudformation.yaml\n%s\n--- iam-policy.json\n%s", gj, wj)
	}
	if roles, _ := policy["Roles"].([]any); len(roles) == 0 {
		t.Error("the instance policy is attached to no role")
	}

	// Least privilege in iam-policy.json itself.
	for _, s := range want.Statement {
		if s.Effect != "Allow" {
			t.Errorf("statement %q: Effect %q", s.Sid, s.Effect)
		}
		for _, a := range s.Action {
			if strings.Contains(a, "*") {
				t.Errorf("statement %q: wildcard action %q", s.Sid, a)
			}
			// Describe* have no resource-level permissions: "*" is the only scope.
			scoped := !strings.HasPrefix(a, "autoscaling:Describe")
			for _, r := range s.Resource {
				switch {
				case scoped && r == "*":
					t.Errorf("statement %q: %s on Resource \"*\"; scope it to the group or the queue", s.Sid, a)
				case strings.HasPrefix(a, "autoscaling:") && scoped &&
					r != "arn:aws:autoscaling:${Region}:${Account}:autoScalingGroup:*:autoScalingGroupName/${GroupName}":
					t.Errorf("statement %q: %s on %q, want the group's ARN", s.Sid, a, r)
				case strings.HasPrefix(a, "sqs:") && r != "arn:aws:sqs:${Region}:${Account}:${QueueName}":
					t.Errorf("statement %q: %s on %q, want the queue's ARN", s.Sid, a, r)
				}
			}
		}
	}

	// The hook, its queue and the role Auto Scaling publishes with.
	queue, qprops := resourceOfType(t, cfn, "AWS::SQS::Queue")
	if _, ok := qprops["RedrivePolicy"]; ok {
		t.Error("the shared lifecycle queue has a RedrivePolicy: every worker hands other instances' messages back, so live notifications would end in the DLQ")
	}
	if qprops["FifoQueue"] == true {
		t.Error("Auto Scaling cannot notify FIFO queues")
	}
	_, hook := resourceOfType(t, cfn, "AWS::AutoScaling::LifecycleHook")
	for k, want := range map[string]any{
		"LifecycleTransition":   "autoscaling:EC2_INSTANCE_TERMINATING",
		"DefaultResult":         "CONTINUE",
		"HeartbeatTimeout":      map[string]any{"Ref": "HeartbeatTimeout"},
		"NotificationTargetARN": map[string]any{"Fn::GetAtt": []any{queue, "Arn"}},
	} {
		if !reflect.DeepEqual(hook[k], want) {
			t.Errorf("lifecycle hook %s = %v, want %v", k, hook[k], want)
		}
	}
	if def := dig(t, cfn, "Parameters", "HeartbeatTimeout", "Default"); fmt.Sprint(def) != "600" {
		t.Errorf("HeartbeatTimeout parameter default %v, want 600", def)
	}
	roleRef, _ := hook["RoleARN"].(map[string]any)
	roleAtt, _ := roleRef["Fn::GetAtt"].([]any)
	if len(roleAtt) != 2 || roleAtt[1] != "Arn" {
		t.Fatalf("lifecycle hook RoleARN = %v, want !GetAtt <role>.Arn", hook["RoleARN"])
	}
	role, _ := dig(t, cfn, "Resources", roleAtt[0].(string)).(map[string]any)
	if role["Type"] != "AWS::IAM::Role" {
		t.Fatalf("lifecycle hook RoleARN points at a %v", role["Type"])
	}
	trust, _ := json.Marshal(dig(t, role, "Properties", "AssumeRolePolicyDocument"))
	if !strings.Contains(string(trust), `"autoscaling.amazonaws.com"`) {
		t.Errorf("the hook's role does not trust autoscaling.amazonaws.com: %s", trust)
	}
	var publish []string
	for _, p := range dig(t, role, "Properties", "Policies").([]any) {
		for _, s := range dig(t, p, "PolicyDocument", "Statement").([]any) {
			actions, err := stringOrList(dig(t, s, "Action"))
			if err != nil {
				t.Fatalf("hook role statement Action: %v", err)
			}
			publish = append(publish, actions...)
			if e := dig(t, s, "Effect"); e != "Allow" {
				t.Errorf("hook role statement Effect = %v", e)
			}
			if r := dig(t, s, "Resource"); !reflect.DeepEqual(r, map[string]any{"Fn::GetAtt": []any{queue, "Arn"}}) {
				t.Errorf("hook role statement Resource = %v, want !GetAtt %s.Arn", r, queue)
			}
		}
	}
	sort.Strings(publish)
	if strings.Join(publish, " ") != "sqs:GetQueueUrl sqs:SendMessage" {
		t.Errorf("the hook's role allows %v, want exactly sqs:GetQueueUrl and sqs:SendMessage", publish)
	}
}

// ---------------------------------------------------------------- operations the daemon calls

// sdkOperations lists the API operations of an SDK client: its methods
// shaped func(context.Context, *<Op>Input, ...func(*Options)) (*<Op>Output, error).
func sdkOperations(client any) map[string]bool {
	ops := map[string]bool{}
	ctxType := reflect.TypeOf((*context.Context)(nil)).Elem()
	typ := reflect.TypeOf(client)
	for i := 0; i < typ.NumMethod(); i++ {
		m := typ.Method(i)
		ft := m.Type // receiver first
		if ft.NumIn() != 4 || ft.NumOut() != 2 || !ft.IsVariadic() || ft.In(1) != ctxType {
			continue
		}
		in, out := ft.In(2), ft.Out(0)
		if in.Kind() == reflect.Pointer && in.Elem().Name() == m.Name+"Input" &&
			out.Kind() == reflect.Pointer && out.Elem().Name() == m.Name+"Output" {
			ops[m.Name] = true
		}
	}
	return ops
}

// daemonPackageDirs lists the directories of this module's packages linked
// into cmd/scaledownd: the code whose AWS calls need permissions.
func daemonPackageDirs(t *testing.T) []string {
	t.Helper()
	root := repoRoot(t)
	out, err := run(t, root, 2*time.Minute, "go", "list", "-deps",
		"-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}", "./cmd/scaledownd")
	if err != nil {
		t.Fatalf("go list -deps ./cmd/scaledownd: %v\n%s", err, out)
	}
	var dirs []string
	for _, d := range strings.Fields(out) {
		dirs = append(dirs, d)
	}
	if len(dirs) < 3 {
		t.Fatalf("go list found only %v", dirs)
	}
	return dirs
}

type call struct {
	op  string
	pos string
}

// calledOperations finds selector calls x.Op(...) in the non-test Go files
// of dirs whose method name is one of ops.
func calledOperations(t *testing.T, dirs []string, ops map[string]bool) []call {
	t.Helper()
	root := repoRoot(t)
	fset := token.NewFileSet()
	var calls []call
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			file, err := parser.ParseFile(fset, f, src, parser.SkipObjectResolution)
			if err != nil {
				t.Fatalf("parse %s: %v", f, err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				ce, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := ce.Fun.(*ast.SelectorExpr)
				if !ok || !ops[sel.Sel.Name] {
					return true
				}
				switch sel.X.(type) {
				case *ast.Ident, *ast.SelectorExpr, *ast.CallExpr, *ast.IndexExpr:
					p := fset.Position(ce.Pos())
					rel, _ := filepath.Rel(root, p.Filename)
					calls = append(calls, call{op: sel.Sel.Name, pos: fmt.Sprintf("%s:%d", rel, p.Line)})
				}
				return true
			})
		}
	}
	return calls
}

func TestIAMPolicyGrantsExactlyTheCalledOperations(t *testing.T) {
	services := map[string]map[string]bool{
		"sqs":         sdkOperations(&sqs.Client{}),
		"autoscaling": sdkOperations(&autoscaling.Client{}),
	}
	for svc, ops := range services {
		// A sanity check on the reflection: both clients have dozens.
		if len(ops) < 15 || (svc == "sqs" && !ops["ReceiveMessage"]) || (svc == "autoscaling" && !ops["CompleteLifecycleAction"]) {
			t.Fatalf("%s client: found only %d operations", svc, len(ops))
		}
	}
	all := map[string]bool{}
	for _, ops := range services {
		for op := range ops {
			all[op] = true
		}
	}

	calls := calledOperations(t, daemonPackageDirs(t), all)
	called := map[string][]string{} // "svc:Op" -> call sites
	for _, c := range calls {
		var svcs []string
		for svc, ops := range services {
			if ops[c.op] {
				svcs = append(svcs, svc)
			}
		}
		if len(svcs) != 1 {
			t.Errorf("%s: %s is an operation of %v; cannot tell which service it calls", c.pos, c.op, svcs)
			continue
		}
		action := svcs[0] + ":" + c.op
		// SQS batch calls are authorized by the single-message action
		// (there is no separate IAM action for them).
		if b, ok := strings.CutSuffix(action, "Batch"); ok && strings.HasPrefix(action, "sqs:") {
			action = b
		}
		called[action] = append(called[action], c.pos)
	}
	if len(called) == 0 {
		t.Fatal("found no AWS operation calls in the daemon's packages")
	}

	granted := map[string]bool{}
	for _, a := range policyActions(loadIAMPolicy(t)) {
		granted[a] = true
	}
	var names []string
	for a := range called {
		names = append(names, a)
	}
	sort.Strings(names)
	for _, a := range names {
		t.Logf("%s called at %s", a, strings.Join(called[a], ", "))
		if !granted[a] {
			t.Errorf("the daemon calls %s (%s) but iam-policy.json does not grant it", a, strings.Join(called[a], ", "))
		}
	}
	for a := range granted {
		if _, ok := called[a]; !ok {
			t.Errorf("iam-policy.json grants %s, which the daemon never calls", a)
		}
	}
}

// ---------------------------------------------------------------- cloud-init

func TestCloudInitConfigLoads(t *testing.T) {
	raw := readRepoFile(t, "deploy/aws/cloud-init.yaml")
	if !strings.HasPrefix(string(raw), "#cloud-config\n") {
		t.Fatal("cloud-init.yaml must start with #cloud-config")
	}
	var ci struct {
		WriteFiles []struct {
			Path, Content, Permissions, Owner string
		} `yaml:"write_files"`
		Runcmd [][]string `yaml:"runcmd"`
	}
	if err := yaml.Unmarshal(raw, &ci); err != nil {
		t.Fatalf("cloud-init.yaml: %v", err)
	}
	var content string
	for _, f := range ci.WriteFiles {
		if f.Path == "/etc/scaledownd/config.yaml" {
			content = f.Content
		}
	}
	if content == "" {
		t.Fatal("cloud-init.yaml does not write /etc/scaledownd/config.yaml")
	}
	filled := strings.NewReplacer(
		"${QueueUrl}", "https://sqs.eu-west-1.amazonaws.com/123456789012/trino-workers-lifecycle",
		"${GroupName}", "trino-workers",
		"${HookName}", "trino-drain",
	).Replace(content)
	if m := subVariable.FindString(filled); m != "" {
		t.Fatalf("cloud-init.yaml: unknown placeholder %s", m)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(filled), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := loadConfigFile(t, path)
	if cfg.AWS.QueueURL == "" || cfg.AWS.Group != "trino-workers" || cfg.AWS.Hook != "trino-drain" {
		t.Errorf("cloud-init config: queue %q, group %q, hook %q", cfg.AWS.QueueURL, cfg.AWS.Group, cfg.AWS.Hook)
	}
	starts := false
	for _, c := range ci.Runcmd {
		if len(c) == 3 && c[0] == "systemctl" && (c[1] == "restart" || c[1] == "start") && c[2] == "scaledownd.service" {
			starts = true
		}
	}
	if !starts {
		t.Error("cloud-init.yaml does not (re)start scaledownd.service")
	}
}
