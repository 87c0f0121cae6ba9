package builtin

import (
	"context"
	"errors"
	"fmt"

	"github.com/streamerio/streamer/pipes"
)

// RouteConfig configures the route pipe.
type RouteConfig struct {
	Routes  []RouteCase  `yaml:"routes" required:"true" doc:"Predicates tried in order; a record goes to the output of the first that is true."`
	Default *pipes.Field `yaml:"default" doc:"Output for records that match no route. Without it they are dropped."`
	All     bool         `yaml:"all" default:"false" doc:"Send a record to every matching route, not just the first."`
}

// RouteCase is one route: a predicate and the output it sends to.
type RouteCase struct {
	When pipes.Expr  `yaml:"when" required:"true" doc:"Boolean expression over the record's fields."`
	To   pipes.Field `yaml:"to" required:"true" doc:"The output dataset (one of the pipe's to: list)."`
}

func init() {
	pipes.MustRegister("route", pipes.Spec{
		Summary:     "Sends each record to one of several outputs, chosen by predicate.",
		Example:     "routes:\n  - when: amount >= 1000\n    to: big-orders\n  - when: amount < 0\n    to: refunds\ndefault: orders-rest",
		MinOutputs:  1,
		KeepsSchema: true,
	}, newRoute)
}

type route struct {
	when     []*pipes.Program
	to       []int
	fallback int // -1: drop
	all      bool
	schema   *pipes.Schema
}

func newRoute(c RouteConfig, env *pipes.Env) (pipes.Pipe, error) {
	r := &route{fallback: -1, all: c.All, schema: env.InputSchema()}
	var errs []error
	used := make([]bool, len(env.Outputs))
	for _, rc := range c.Routes {
		p, err := env.Compile(rc.When, pipes.AsBool())
		if err != nil {
			errs = append(errs, err)
		}
		port, err := env.Output(rc.To)
		if err != nil {
			errs = append(errs, err)
		} else {
			used[port] = true
		}
		r.when = append(r.when, p)
		r.to = append(r.to, port)
	}
	if c.Default != nil {
		port, err := env.Output(*c.Default)
		if err != nil {
			errs = append(errs, err)
		} else {
			used[port] = true
		}
		r.fallback = port
	}
	for i, u := range used {
		if !u && len(errs) == 0 {
			errs = append(errs, fmt.Errorf("output %q is never routed to", env.Outputs[i].Dataset))
		}
	}
	if len(c.Routes) == 0 {
		errs = append(errs, errors.New("route needs at least one route"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return r, nil
}

func (p *route) Process(_ context.Context, b *pipes.Batch, out *pipes.Output) error {
	for _, rec := range b.Records {
		matched := false
		for i, w := range p.when {
			ok, err := w.Bool(rec)
			if err != nil {
				out.Fail(rec, err)
				matched = true // failed records go nowhere else
				break
			}
			if !ok {
				continue
			}
			if matched { // a second match in all mode gets its own copy
				out.Emit(p.to[i], rec.Clone())
			} else {
				out.Emit(p.to[i], rec)
			}
			matched = true
			if !p.all {
				break
			}
		}
		if !matched && p.fallback >= 0 {
			out.Emit(p.fallback, rec)
		}
	}
	return nil
}

// OutputSchema is the input schema, with the fields that a port's route
// proves not null (such as x in x != nil) marked so, when one route alone
// leads to the port.
func (p *route) OutputSchema(port int) *pipes.Schema {
	if port == p.fallback {
		return p.schema
	}
	var only *pipes.Program
	for i, to := range p.to {
		if to == port {
			if only != nil {
				return p.schema
			}
			only = p.when[i]
		}
	}
	if only == nil {
		return p.schema
	}
	return only.Narrow(p.schema)
}

func (p *route) UsedFields() ([]string, bool) { return pipes.UsedFields(p.when) }

func (p *route) ShallowFields() []string { return pipes.ShallowFields(p.when, nil) }

var (
	_ pipes.SchemaDeriver = (*route)(nil)
	_ pipes.FieldUser     = (*route)(nil)
	_ pipes.ShallowReader = (*route)(nil)
)
