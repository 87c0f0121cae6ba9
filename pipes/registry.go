package pipes

import (
	"fmt"
	"reflect"
	"sort"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/streamerio/streamer/internal/spec"
)

// Spec documents a pipe type. The config struct given to Register carries the
// field-level documentation; Spec carries the type-level one.
type Spec struct {
	// Summary is one sentence, shown in `streamer pipes` and the JSON Schema.
	Summary string
	// Example is a YAML snippet of the type's config block.
	Example string
	// MinOutputs and MaxOutputs bound how many datasets the pipe may write;
	// zero MaxOutputs means no limit. The defaults are 1 and 1.
	MinOutputs, MaxOutputs int
	// KeepsSchema says records leave with the schema of the one input
	// they came from (filter, route, dedupe). The compiler then knows the
	// outputs' schema even when the pipe's config has errors, and checks
	// the pipes downstream in the same run.
	KeepsSchema bool
}

// Constructor builds a pipe from its decoded config. It is called once when
// a topology is validated (with env.Partition == -1) and once per partition
// task. Errors should be positioned with Errorf, or come from Env.Compile.
type Constructor[C any] func(conf C, env *Env) (Pipe, error)

// Type is a registered pipe type.
type Type struct {
	Name       string
	Spec       Spec
	configType reflect.Type
	build      func(conf any, env *Env) (Pipe, error)
}

// Config is a decoded pipe config, as returned by Type.Decode.
type Config struct {
	t *Type
	v any
}

var (
	regMu sync.RWMutex
	reg   = map[string]*Type{}
)

// Register adds a pipe type. C must be a struct type whose fields carry yaml
// tags (see package internal/spec for the tags). It returns an error if the
// name is taken.
func Register[C any](name string, s Spec, ctor Constructor[C]) error {
	ct := reflect.TypeOf((*C)(nil)).Elem()
	if ct.Kind() != reflect.Struct {
		return fmt.Errorf("pipes: config of %q must be a struct, not %s", name, ct)
	}
	if s.MinOutputs == 0 && s.MaxOutputs == 0 {
		s.MinOutputs, s.MaxOutputs = 1, 1
	}
	// Building the schema validates the tags now rather than at first use.
	_ = spec.JSONSchema(ct)
	t := &Type{Name: name, Spec: s, configType: ct, build: func(conf any, env *Env) (Pipe, error) {
		return ctor(conf.(C), env)
	}}
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := reg[name]; dup {
		return fmt.Errorf("pipes: type %q is already registered", name)
	}
	reg[name] = t
	return nil
}

// MustRegister is Register for init functions: it panics on error, which can
// only be a programming mistake (a duplicate name or a bad config struct).
func MustRegister[C any](name string, s Spec, ctor Constructor[C]) {
	if err := Register(name, s, ctor); err != nil {
		panic(err)
	}
}

// Lookup returns a registered type.
func Lookup(name string) (*Type, bool) {
	regMu.RLock()
	defer regMu.RUnlock()
	t, ok := reg[name]
	return t, ok
}

// Types returns every registered type, sorted by name.
func Types() []*Type {
	regMu.RLock()
	defer regMu.RUnlock()
	out := make([]*Type, 0, len(reg))
	for _, t := range reg {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// TypeNames returns the registered names, sorted.
func TypeNames() []string {
	var out []string
	for _, t := range Types() {
		out = append(out, t.Name)
	}
	return out
}

// Decode decodes a YAML config block for this type, reporting every problem
// with its position.
func (t *Type) Decode(node *yaml.Node) (Config, []*spec.Error) {
	v := reflect.New(t.configType)
	errs := spec.Decode(node, v.Interface())
	return Config{t: t, v: v.Elem().Interface()}, errs
}

// New builds a pipe from a decoded config.
func (c Config) New(env *Env) (Pipe, error) {
	return c.t.build(c.v, env)
}

// Value returns the decoded config struct.
func (c Config) Value() any { return c.v }

// JSONSchema returns the JSON Schema of the type's config block.
func (t *Type) JSONSchema() map[string]any {
	s := spec.JSONSchema(t.configType)
	s["description"] = t.Spec.Summary
	return s
}

// Reference returns a plain-text reference of the config keys.
func (t *Type) Reference() string {
	return spec.Describe(t.configType, "  ")
}
