// Package gen makes synthetic order events for the demo, the benchmarks and
// the integration tests, together with what a correct pipeline must make of
// them, so results can be checked against an independent oracle.
package gen

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Kind says what a generated record is meant to exercise.
type Kind int

const (
	// Valid orders pass the example's filter.
	Valid Kind = iota
	// Filtered orders are well-formed but fail the filter (amount <= 0 or
	// no country).
	Filtered
	// Malformed records are not JSON: they fail to decode.
	Malformed
	// BadAmount orders have a string amount: the filter's expression fails.
	BadAmount
)

// Order is one generated record and its expected fate.
type Order struct {
	Key, Value []byte
	Kind       Kind
	Amount     float64
	Items      int
}

// Gold reports whether the example's route sends the order to the gold tier.
func (o Order) Gold() bool { return o.Kind == Valid && o.Amount >= 500 }

// Orders makes order events. The same seed gives the same sequence.
type Orders struct {
	rng *rand.Rand
	// BadEvery makes every n-th record malformed and every n-th+1 one have a
	// bad amount; 0 disables bad records.
	BadEvery int
	// Pad adds a filler field so that each value is about this many bytes;
	// 0 leaves records at their natural size (~300 bytes).
	Pad int
	// Wide adds nested profile, device and attribute objects that the
	// example pipes do not touch: the shape of a typical event that an
	// enrichment job reads a few fields of.
	Wide bool
	n    int
}

// NewOrders returns a generator.
func NewOrders(seed uint64) *Orders {
	return &Orders{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

var words = strings.Fields(`delivery package address please leave door neighbour
gift wrap card birthday thanks order return size colour blue red green large small
medium fragile handle care express morning evening weekend office reception code
gate ring bell call phone before arrival late early store pickup locker box note`)

var countries = []string{"DE", "FR", "NL", "US", "GB", "JP", "BR", ""}
var currencies = []string{"EUR", "USD", "GBP"}

// Next returns the next order.
func (g *Orders) Next() Order {
	i := g.n
	g.n++
	key := "c-" + strconv.Itoa(g.rng.IntN(5000))
	o := Order{Key: []byte(key), Kind: Valid}
	if g.BadEvery > 0 && i%g.BadEvery == g.BadEvery-1 {
		o.Kind = Malformed
		o.Value = []byte(fmt.Sprintf(`{"order_id": "o-%d", "amount": 1`, i))
		return o
	}
	country := countries[g.rng.IntN(len(countries))]
	amount := float64(g.rng.IntN(100000)-2000) / 100 // some negative
	o.Amount = amount
	if amount <= 0 || country == "" {
		o.Kind = Filtered
	}
	amountJSON := strconv.FormatFloat(amount, 'f', -1, 64)
	if g.BadEvery > 0 && i%g.BadEvery == g.BadEvery-2 {
		o.Kind = BadAmount
		amountJSON = strconv.Quote(amountJSON)
	}
	o.Items = 1 + g.rng.IntN(4)
	var b strings.Builder
	fmt.Fprintf(&b, `{"order_id":"o-%d","customer_id":%q,"country":%q,"amount":%s,"currency":%q,"items":[`,
		i, key, country, amountJSON, currencies[g.rng.IntN(len(currencies))])
	for j := 0; j < o.Items; j++ {
		if j > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sku":"sku-%d","qty":%d,"price":%d.%02d}`, g.rng.IntN(900), 1+g.rng.IntN(3), g.rng.IntN(300), g.rng.IntN(100))
	}
	fmt.Fprintf(&b, `],"debug":null,"ts":"2026-11-24T10:%02d:%02dZ"`, (i/60)%60, i%60)
	if g.Wide {
		fmt.Fprintf(&b, `,"profile":{"name":"Customer %d","email":"c%d@example.com","tier":%q,"since":"2019-01-%02d","address":{"street":"Main St %d","city":"Oslo","zip":"0150","country":%q},"tags":["a","b","c"]}`,
			i, i, []string{"gold", "silver", "bronze"}[i%3], 1+i%28, i%500, country)
		fmt.Fprintf(&b, `,"device":{"os":"ios","version":"17.%d","model":"iPhone","locale":"nb-NO","tz":"Europe/Oslo","screen":{"w":1170,"h":2532}}`, i%9)
		fmt.Fprintf(&b, `,"attrs":{"campaign":"c-%d","ab":%d,"score":%d.%d,"flags":[true,false,true],"ref":null}`, i%40, i%2, g.rng.IntN(100), g.rng.IntN(10))
	}
	if g.Pad > 0 && b.Len() < g.Pad-12 {
		// Text of random words: it compresses about as well as real free
		// text does (a run of one letter would compress a hundredfold and
		// flatter whatever only moves bytes).
		b.WriteString(`,"note":"`)
		for n := g.Pad - b.Len() - 2; n > 0; {
			w := words[g.rng.IntN(len(words))]
			if len(w)+1 > n {
				w = w[:max(0, n-1)]
			}
			b.WriteString(w)
			b.WriteByte(' ')
			n -= len(w) + 1
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	o.Value = []byte(b.String())
	return o
}

// Tally counts what a correct run of the enrichment example must produce
// from the orders added to it.
type Tally struct {
	Orders, Enriched, Gold, Lines, DeadLetters int64
}

// Add counts one order.
func (t *Tally) Add(o Order) {
	t.Orders++
	switch o.Kind {
	case Valid:
		t.Enriched++
		t.Lines += int64(o.Items)
		if o.Gold() {
			t.Gold++
		}
	case Malformed, BadAmount:
		t.DeadLetters++
	}
}
