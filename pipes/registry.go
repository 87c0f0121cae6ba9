package pipes

import (
	"errors"
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

// NewType makes a pipe type that can be registered into any Environment.
// C must be a struct type whose fields carry yaml tags (see package
// internal/spec for the tags); a bad tag is an error now rather than at
// first use. The zero MinOutputs and MaxOutputs of s mean 1 and 1.
func NewType[C any](name string, s Spec, ctor Constructor[C]) (*Type, error) {
	ct := reflect.TypeOf((*C)(nil)).Elem()
	if ct.Kind() != reflect.Struct {
		return nil, fmt.Errorf("pipes: config of %q must be a struct, not %s", name, ct)
	}
	if name == "" {
		return nil, errors.New("pipes: a pipe type needs a name")
	}
	if s.MinOutputs == 0 && s.MaxOutputs == 0 {
		s.MinOutputs, s.MaxOutputs = 1, 1
	}
	// Building the schema validates the tags now rather than at first use.
	_ = spec.JSONSchema(ct)
	return &Type{Name: name, Spec: s, configType: ct, build: func(conf any, env *Env) (Pipe, error) {
		return ctor(conf.(C), env)
	}}, nil
}

// MustNewType is NewType for package-level variables: it panics on error,
// which can only be a programming mistake (a bad config struct).
func MustNewType[C any](name string, s Spec, ctor Constructor[C]) *Type {
	t, err := NewType(name, s, ctor)
	if err != nil {
		panic(err)
	}
	return t
}

// Environment is a set of pipe types, by name: what a topology compiled
// with it may use (topology.WithPipes, streamertest). The process-wide one,
// DefaultEnvironment, holds whatever packages register in their init
// functions: the built-in types (in any binary that imports package
// topology, which registers them) and custom ones; tests build isolated ones with
// NewEnvironment or DefaultEnvironment().Clone().
//
// It is not the *Env a Constructor gets, which is the context of one pipe
// being built. An Environment is safe for concurrent use.
type Environment struct {
	mu    sync.RWMutex
	types map[string]*Type
}

// NewEnvironment returns an empty Environment: not even the built-in pipe
// types are in it.
func NewEnvironment() *Environment {
	return &Environment{types: map[string]*Type{}}
}

var defaultEnv = NewEnvironment()

// DefaultEnvironment returns the process-wide Environment, into which
// Register, MustRegister and the built-in pipe types register (the
// built-ins when package topology is imported), and which a topology
// compiles with unless given another.
func DefaultEnvironment() *Environment { return defaultEnv }

// Clone returns a new Environment with the same types, to which types can
// be added without changing e.
func (e *Environment) Clone() *Environment {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := NewEnvironment()
	for name, t := range e.types {
		out.types[name] = t
	}
	return out
}

// Register adds a pipe type. It returns an error if the name is taken.
func (e *Environment) Register(t *Type) error {
	if t == nil || t.build == nil {
		return errors.New("pipes: register a type made by NewType")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, dup := e.types[t.Name]; dup {
		return fmt.Errorf("pipes: type %q is already registered", t.Name)
	}
	e.types[t.Name] = t
	return nil
}

// MustRegister is Register for init functions and test setup: it panics on
// error, which can only be a programming mistake (a duplicate name).
func (e *Environment) MustRegister(t *Type) {
	if err := e.Register(t); err != nil {
		panic(err)
	}
}

// Lookup returns a registered type.
func (e *Environment) Lookup(name string) (*Type, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	t, ok := e.types[name]
	return t, ok
}

// Types returns every registered type, sorted by name.
func (e *Environment) Types() []*Type {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]*Type, 0, len(e.types))
	for _, t := range e.types {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// TypeNames returns the registered names, sorted.
func (e *Environment) TypeNames() []string {
	var out []string
	for _, t := range e.Types() {
		out = append(out, t.Name)
	}
	return out
}

// Register adds a pipe type to DefaultEnvironment (see NewType for C). It
// returns an error if the name is taken.
func Register[C any](name string, s Spec, ctor Constructor[C]) error {
	t, err := NewType(name, s, ctor)
	if err != nil {
		return err
	}
	return defaultEnv.Register(t)
}

// MustRegister is Register for init functions: it panics on error, which can
// only be a programming mistake (a duplicate name or a bad config struct).
func MustRegister[C any](name string, s Spec, ctor Constructor[C]) {
	if err := Register(name, s, ctor); err != nil {
		panic(err)
	}
}

// Lookup returns a type registered in DefaultEnvironment.
func Lookup(name string) (*Type, bool) { return defaultEnv.Lookup(name) }

// Types returns every type in DefaultEnvironment, sorted by name.
func Types() []*Type { return defaultEnv.Types() }

// TypeNames returns the names in DefaultEnvironment, sorted.
func TypeNames() []string { return defaultEnv.TypeNames() }

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
