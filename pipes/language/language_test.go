package language_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pemistahl/lingua-go"
	"go.yaml.in/yaml/v3"

	"github.com/streamerio/streamer/pipes"
	_ "github.com/streamerio/streamer/pipes/language"
)

// buildLanguage makes a language pipe for a partition (-1: validation).
func buildLanguage(t testing.TB, conf string, partition int32, schema *pipes.Schema) (pipes.Pipe, error) {
	t.Helper()
	typ, ok := pipes.Lookup("language")
	if !ok {
		t.Fatal("language is not registered")
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(conf), &n); err != nil {
		t.Fatal(err)
	}
	cfg, errs := typ.Decode(n.Content[0])
	if len(errs) > 0 {
		return nil, errs[0]
	}
	return cfg.New(&pipes.Env{Pipe: "lang", Partition: partition,
		Inputs: []pipes.Port{{Dataset: "in", Schema: schema}}, Outputs: []pipes.Port{{Dataset: "out"}}})
}

// run processes JSON values and returns, per output port, the JSON of
// what was emitted, and the errors of failed records.
func run(t testing.TB, p pipes.Pipe, ports int, values ...string) ([][]string, []string) {
	t.Helper()
	b := &pipes.Batch{}
	for _, v := range values {
		var x any
		if err := json.Unmarshal([]byte(v), &x); err != nil {
			t.Fatal(err)
		}
		b.Records = append(b.Records, &pipes.Record{Key: []byte("k"), Value: x})
	}
	out := pipes.NewOutput(ports)
	if err := p.Process(context.Background(), b, out); err != nil {
		t.Fatal(err)
	}
	got := make([][]string, ports)
	for i := range got {
		for _, r := range out.Records(i) {
			j, _ := json.Marshal(r.Value)
			got[i] = append(got[i], string(j))
		}
	}
	var fails []string
	for _, f := range out.Failures() {
		fails = append(fails, f.Err.Error())
	}
	return got, fails
}

// Real sentences, short (a few words, where high accuracy matters) and long.
var sentences = []struct{ lang, text string }{
	{"en", "The committee postponed its decision until the budget figures for next year have been checked by the auditors."},
	{"en", "Where is the station?"},
	{"de", "Ich habe heute Morgen mit meiner Schwester lange über die Sommerferien in den Bergen gesprochen."},
	{"de", "Wie spät ist es?"},
	{"fr", "Nous irons au marché demain matin pour acheter des légumes frais et du fromage pour le dîner."},
	{"fr", "Je ne sais pas."},
	{"es", "¿Dónde está la biblioteca más cercana? Tengo que devolver unos libros antes del viernes."},
	{"es", "Muchas gracias, amigo"},
	{"it", "Domani andiamo al mare con tutta la famiglia, se il tempo lo permette e la macchina parte."},
	{"pt", "Eu gostaria de reservar uma mesa para duas pessoas esta noite, perto da janela, por favor."},
	{"nl", "Het is vandaag veel te warm om in de tuin te werken, dus we blijven lekker binnen."},
	{"pl", "Jutro rano pojedziemy pociągiem do Krakowa, żeby odwiedzić babcię i dziadka."},
	{"tr", "Yarın sabah erkenden kalkıp annemle birlikte pazara gideceğiz."},
	{"ru", "Сегодня вечером мы пойдём в театр смотреть новую постановку известного режиссёра."},
	{"ru", "Спасибо большое"},
	{"ar", "أحب قراءة الكتب في المساء بعد أن أنتهي من العمل."},
	{"ja", "今日はとても良い天気なので、公園を散歩しましょう。"},
	{"zh", "我们明天早上去公园散步，然后一起吃早饭。"},
	{"ko", "오늘 날씨가 정말 좋아서 친구들과 산책을 했어요."},
	{"hi", "मैं कल सुबह अपने दोस्तों के साथ बाज़ार जाऊँगा।"},
}

// TestLanguageDetects runs real sentences through the pipe with the default
// languages, in both accuracies, one batch each, as the engine would.
func TestLanguageDetects(t *testing.T) {
	for _, acc := range []string{"high", "low"} {
		t.Run(acc, func(t *testing.T) {
			p, err := buildLanguage(t, "text: text\noutput: lang\nconfidence: conf\naccuracy: "+acc, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			batch := &pipes.Batch{}
			for _, s := range sentences {
				batch.Records = append(batch.Records, &pipes.Record{Value: map[string]any{"text": s.text}})
			}
			out := pipes.NewOutput(1)
			if err := p.Process(context.Background(), batch, out); err != nil {
				t.Fatal(err)
			}
			if len(out.Records(0)) != len(sentences) || len(out.Failures()) != 0 {
				t.Fatalf("%d emitted, %d failed", len(out.Records(0)), len(out.Failures()))
			}
			wrong := 0
			for i, r := range out.Records(0) {
				v := r.Value.(map[string]any)
				conf, ok := v["conf"].(float64)
				if !ok || conf <= 0 || conf > 1 {
					t.Errorf("%q: confidence %v", sentences[i].text, v["conf"])
				}
				if v["lang"] != sentences[i].lang {
					wrong++
					// Low accuracy is documented to be weak on short text.
					if acc == "high" || len([]rune(sentences[i].text)) >= 40 {
						t.Errorf("%q: got %v (confidence %v), want %s", sentences[i].text, v["lang"], v["conf"], sentences[i].lang)
					}
				}
			}
			t.Logf("%s accuracy: %d of %d wrong", acc, wrong, len(sentences))
		})
	}
}

func TestLanguageCases(t *testing.T) {
	tests := []struct {
		name, conf string
		in         []string
		want       []string
		fails      []string
	}{
		{
			name: "null text gives null outputs, empty text no language",
			conf: "text: text\noutput: lang\nconfidence: conf\nlanguages: [en, de]",
			in:   []string{`{"text":null}`, `{"other":1}`, `{"text":""}`, `{"text":"1234 !!"}`},
			want: []string{`{"conf":null,"lang":null,"text":null}`, `{"conf":null,"lang":null,"other":1}`, `{"conf":0,"lang":null,"text":""}`, `{"conf":0,"lang":null,"text":"1234 !!"}`},
		},
		{
			name:  "non-string text and non-record values fail",
			conf:  "text: text\noutput: lang\nlanguages: [en, de]",
			in:    []string{`{"text":42}`, `{"text":["hello"]}`, `"just a string"`, `{"text":"Good morning to all of you"}`},
			want:  []string{`{"lang":"en","text":"Good morning to all of you"}`},
			fails: []string{`text "text" gave float64; want a string`, `text "text" gave []interface {}; want a string`, "language needs a record with fields, got string"},
		},
		{
			name: "records keep their order around nulls and failures",
			conf: "text: t\noutput: l\nlanguages: [en, de, fr]",
			in: []string{`{"t":"Good morning, how are you today?"}`, `{"t":null}`, `{"t":"Guten Morgen, wie geht es dir heute?"}`,
				`{"t":7}`, `{"t":"Bonjour, comment allez-vous aujourd'hui ?"}`},
			want: []string{`{"l":"en","t":"Good morning, how are you today?"}`, `{"l":null,"t":null}`, `{"l":"de","t":"Guten Morgen, wie geht es dir heute?"}`,
				`{"l":"fr","t":"Bonjour, comment allez-vous aujourd'hui ?"}`},
			fails: []string{"gave float64; want a string"},
		},
		{
			name: "text is an expression; outputs may be nested",
			conf: "text: title + '. ' + body\noutput: meta.lang\nlanguages: [en, de, fr]",
			in:   []string{`{"title":"Le chat","body":"Il dort sur le canapé depuis ce matin."}`},
			want: []string{`{"body":"Il dort sur le canapé depuis ce matin.","meta":{"lang":"fr"},"title":"Le chat"}`},
		},
		{
			// French is not listed: the closest listed language wins, and
			// only a confidence floor turns that into no answer.
			name: "restricted set gives the closest listed language",
			conf: "text: text\noutput: lang\nlanguages: [en, it]",
			in:   []string{`{"text":"Nous irons au marché demain matin"}`},
			want: []string{`{"lang":"en","text":"Nous irons au marché demain matin"}`},
		},
		{
			name: "min_confidence nulls a weak answer",
			conf: "text: text\noutput: lang\nlanguages: [en, it]\nmin_confidence: 0.99",
			in:   []string{`{"text":"Nous irons au marché demain matin"}`, `{"text":"Andiamo al mare domani mattina con la famiglia"}`},
			want: []string{`{"lang":null,"text":"Nous irons au marché demain matin"}`, `{"lang":"it","text":"Andiamo al mare domani mattina con la famiglia"}`},
		},
		{
			// Danish and Norwegian Bokmål share most words: a close call.
			name: "min_distance nulls a close call",
			conf: "text: text\noutput: lang\nlanguages: [da, nb, sv]\nmin_distance: 0.5",
			in:   []string{`{"text":"Jeg har ikke tid i dag"}`, `{"text":"Jag har inte tid idag, vi ses i morgon"}`},
			want: []string{`{"lang":null,"text":"Jeg har ikke tid i dag"}`, `{"lang":"sv","text":"Jag har inte tid idag, vi ses i morgon"}`},
		},
		{
			name: "a non-record value in the way of the output fails",
			conf: "text: text\noutput: text.lang\nlanguages: [en, de]",
			in:   []string{`{"text":"Good morning"}`},
			want: nil, fails: []string{`cannot set "text.lang"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := buildLanguage(t, tt.conf, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, fails := run(t, p, 1, tt.in...)
			if strings.Join(got[0], "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got[0], "\n"), strings.Join(tt.want, "\n"))
			}
			if len(fails) != len(tt.fails) {
				t.Fatalf("failures %q, want %d", fails, len(tt.fails))
			}
			for i, f := range tt.fails {
				if !strings.Contains(fails[i], f) {
					t.Errorf("failure %d = %q, want it to contain %q", i, fails[i], f)
				}
			}
		})
	}
}

// TestLanguageMatchesLingua checks that the pipe's answer, computed from the
// confidence values in one pass, is lingua's DetectLanguageOf with the same
// minimum relative distance.
func TestLanguageMatchesLingua(t *testing.T) {
	langs := []lingua.Language{lingua.English, lingua.German, lingua.French, lingua.Spanish, lingua.Italian, lingua.Portuguese, lingua.Dutch}
	texts := []string{"", "ok", "Hello", "Gift", "Die Gift", "prologue", "No problem", "casa", "Bonjour tout le monde", "Este es un libro", "Ik ben moe", "a b c"}
	for _, s := range sentences {
		texts = append(texts, s.text)
	}
	for _, dist := range []float64{0, 0.1, 0.25, 0.5} {
		det := lingua.NewLanguageDetectorBuilder().FromLanguages(langs...).WithMinimumRelativeDistance(dist).Build()
		p, err := buildLanguage(t, fmt.Sprintf("text: text\noutput: lang\nlanguages: [en, de, fr, es, it, pt, nl]\nmin_distance: %v", dist), 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		var in []string
		for _, s := range texts {
			b, _ := json.Marshal(map[string]string{"text": s})
			in = append(in, string(b))
		}
		got, _ := run(t, p, 1, in...)
		for i, s := range texts {
			want := "null"
			if l, ok := det.DetectLanguageOf(s); ok {
				want = `"` + strings.ToLower(l.IsoCode639_1().String()) + `"`
			}
			if !strings.Contains(got[0][i], `"lang":`+want) {
				t.Errorf("min_distance %v, %q: pipe says %s, lingua %s", dist, s, got[0][i], want)
			}
		}
	}
}

func TestLanguageConfigErrors(t *testing.T) {
	schema := &pipes.Schema{Fields: []pipes.SchemaField{{Name: "message", Kind: pipes.String}, {Name: "amount", Kind: pipes.Float64}}}
	tests := []struct{ conf, want string }{
		{"text: message\noutput: lang\nlanguages: [en, xx]", `3:17: unknown language "xx": want an ISO 639-1 code that lingua supports`},
		{"text: message\noutput: lang\nlanguages: [en, English]", `3:17: unknown language "English": want an ISO 639-1 code that lingua supports (did you mean "en", English?)`},
		{"text: message\noutput: lang\nlanguages: [en, deu]", `(did you mean "de", German?)`},
		{"text: message\noutput: lang\nlanguages: [en, jp]", `(did you mean "ja"?)`},
		{"text: message\noutput: lang\nlanguages: [en, portugese]", `(did you mean "pt", portuguese?)`},
		{"text: message\noutput: lang\nlanguages: [en, zhh]", `(did you mean "zh"?)`},
		{"text: message\noutput: lang\nlanguages:\n  - en\n  - de\n  - en", `6:5: language "en" is listed twice`},
		{"text: message\noutput: lang\nlanguages: [en]", `1:1: languages lists 1 language(s); want at least 2`},
		{"text: message\noutput: lang\nlanguages: []", `want at least 2`},
		{"text: amount\noutput: lang", `1:7: text "amount" is float64; want a string`},
		{"text: mesage\noutput: lang", `unknown name mesage (did you mean "message"?)`},
		{"text: message\noutput: lang\nmin_distance: 1.5", `min_distance is 1.5; want 0 to 0.99`},
		{"text: message\noutput: lang\nmin_confidence: -1", `min_confidence is -1; want 0 to 1`},
		{"text: message\noutput: lang\naccuracy: medium", `3:11: "medium" is not one of high, low`},
		{"text: message\noutput: lang\nconfidence: lang", `3:13: confidence and output are both "lang"`},
		{"text: message", `missing required field "output"`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, err := buildLanguage(t, tt.conf, -1, schema)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestLanguageSchemaAndFields(t *testing.T) {
	schema := &pipes.Schema{Fields: []pipes.SchemaField{{Name: "id", Kind: pipes.Int64}, {Name: "title", Kind: pipes.String}, {Name: "body", Kind: pipes.String}}}
	p, err := buildLanguage(t, "text: title + ' ' + body\noutput: lang\nconfidence: lang_conf\nlanguages: [en, de]", 0, schema)
	if err != nil {
		t.Fatal(err)
	}
	s := p.(pipes.SchemaDeriver).OutputSchema(0)
	want := []pipes.SchemaField{
		{Name: "id", Kind: pipes.Int64}, {Name: "title", Kind: pipes.String}, {Name: "body", Kind: pipes.String},
		{Name: "lang", Kind: pipes.String, Nullable: true}, {Name: "lang_conf", Kind: pipes.Float64, Nullable: true},
	}
	if fmt.Sprint(s.Fields) != fmt.Sprint(want) {
		t.Errorf("schema %v, want %v", s.Fields, want)
	}
	if len(schema.Fields) != 3 {
		t.Error("the input schema was changed")
	}
	used, ok := p.(pipes.FieldUser).UsedFields()
	if !ok || strings.Join(used, ",") != "title,body,lang,lang_conf" {
		t.Errorf("used fields %v, %v", used, ok)
	}
}

// TestLanguageSharedAcrossPartitions builds the pipe as the engine does:
// once to validate (which starts loading the models in the background),
// then once per partition task, which waits for that load. Further
// partitions must not load models again (the pipe shares one detector, and
// lingua caches models process-wide), and the tasks then detect
// concurrently. Run it with -race too.
func TestLanguageSharedAcrossPartitions(t *testing.T) {
	// A set no other test uses, so the loading is this test's.
	const conf = "text: text\noutput: lang\nlanguages: [sv, da, nb, fi, is]"
	if _, err := buildLanguage(t, conf, -1, nil); err != nil {
		t.Fatal(err)
	}
	allocated := func() uint64 {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.TotalAlloc
	}
	start := time.Now()
	first, err := buildLanguage(t, conf, 0, nil) // waits for the background load
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("partition 0 ready %v after validation", time.Since(start).Round(time.Millisecond))
	before := allocated()
	ps := []pipes.Pipe{first}
	for part := int32(1); part < 4; part++ {
		p, err := buildLanguage(t, conf, part, nil)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if grown := allocated() - before; grown > 1<<20 {
		t.Errorf("building 3 more partitions allocated %d bytes: models loaded again?", grown)
	}
	texts := map[string]string{
		"sv": "Vi ska åka till stugan i helgen och bada i sjön om vädret tillåter.",
		"fi": "Huomenna menemme mökille saunomaan ja uimaan järvessä.",
		"is": "Við ætlum að fara í sumarbústaðinn um helgina og synda í vatninu.",
	}
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() {
			for range 5 {
				for want, text := range texts {
					b, _ := json.Marshal(map[string]string{"text": text})
					got, _ := run(t, p, 1, string(b))
					if !strings.Contains(got[0][0], `"lang":"`+want+`"`) {
						t.Errorf("%s: got %s", want, got[0][0])
					}
				}
			}
		})
	}
	wg.Wait()
}

// Detecting languages in a topology: the ISO 639-1 code, or null when the
// detection is not reliable enough.
func Example_language() {
	typ, _ := pipes.Lookup("language")
	var n yaml.Node
	_ = yaml.Unmarshal([]byte("text: message\noutput: lang\nconfidence: conf\nlanguages: [en, de, fr, es]\nmin_confidence: 0.6"), &n)
	cfg, _ := typ.Decode(n.Content[0])
	p, err := cfg.New(&pipes.Env{Pipe: "detect", Inputs: []pipes.Port{{Dataset: "posts"}}, Outputs: []pipes.Port{{Dataset: "posts-lang"}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	out := pipes.NewOutput(1)
	_ = p.Process(context.Background(), &pipes.Batch{Records: []*pipes.Record{
		{Value: map[string]any{"message": "Wir sehen uns morgen am Bahnhof."}},
		{Value: map[string]any{"message": "¿Vienes a la fiesta esta noche?"}},
		{Value: map[string]any{"message": "OK"}},
		{Value: map[string]any{"message": nil}},
	}}, out)
	for _, r := range out.Records(0) {
		v := r.Value.(map[string]any)
		if c, ok := v["conf"].(float64); ok {
			fmt.Printf("%v %.2f\n", v["lang"], c)
		} else {
			fmt.Println(v["lang"], v["conf"])
		}
	}
	// Output:
	// de 0.98
	// es 0.85
	// <nil> 0.45
	// <nil> <nil>
}

// sentence200 is about 200 characters of text in a language.
var sentence200 = []string{
	"The committee postponed its decision until the budget figures for next year have been checked by the auditors, which means that the new library will not open before the autumn of next year at the earliest.",
	"Ich habe heute Morgen mit meiner Schwester lange über die Sommerferien in den Bergen gesprochen, und wir haben beschlossen, im August gemeinsam mit den Kindern eine Hütte am See zu mieten und zu wandern.",
	"Nous irons au marché demain matin pour acheter des légumes frais et du fromage pour le dîner, puis nous passerons chez la boulangère qui prépare toujours les meilleures tartes aux pommes du quartier.",
	"¿Dónde está la biblioteca más cercana? Tengo que devolver unos libros antes del viernes, porque si no lo hago tendré que pagar una multa y este mes ya he gastado demasiado dinero en cosas que no necesito.",
	"Domani andiamo al mare con tutta la famiglia, se il tempo lo permette e la macchina parte, perché la settimana scorsa si è fermata in autostrada e abbiamo dovuto aspettare il carro attrezzi per due ore.",
	"Сегодня вечером мы пойдём в театр смотреть новую постановку известного режиссёра, а после спектакля собираемся поужинать в небольшом ресторане недалеко от площади, где всегда очень вкусно готовят.",
	"Eu gostaria de reservar uma mesa para duas pessoas esta noite, perto da janela, por favor, porque é o aniversário da minha mulher e ela adora ver o rio e as luzes da cidade enquanto janta com calma.",
	"Jutro rano pojedziemy pociągiem do Krakowa, żeby odwiedzić babcię i dziadka, a po południu wybierzemy się razem na spacer po rynku i zjemy obiad w małej restauracji, którą polecili nam znajomi z pracy.",
}

// sentence40 is short text, where high accuracy uses 1- to 5-grams.
var sentence40 = []string{
	"The meeting was moved to next Tuesday.",
	"Wir treffen uns morgen am Bahnhof.",
	"Nous partons en vacances samedi.",
	"¿Vienes a la fiesta esta noche?",
	"Ci vediamo domani sera al cinema.",
	"Мы встретимся завтра у вокзала.",
	"Vamos almoçar juntos amanhã?",
	"Spotkamy się jutro na dworcu.",
}

// BenchmarkLanguage measures the pipe on batches of 256 records, the
// default languages, both accuracies and two text lengths, in wall time
// and CPU time per record. Run it with -cpu 1,2: one CPU is the pipe
// without its parallel detection.
func BenchmarkLanguage(b *testing.B) {
	for _, bc := range []struct {
		name  string
		texts []string
	}{{"200chars", sentence200}, {"40chars", sentence40}} {
		for _, acc := range []string{"high", "low"} {
			b.Run(bc.name+"/"+acc, func(b *testing.B) {
				p, err := buildLanguage(b, "text: text\noutput: lang\nconfidence: conf\naccuracy: "+acc, 0, nil)
				if err != nil {
					b.Fatal(err)
				}
				const n = 256
				recs := make([]*pipes.Record, n)
				for i := range recs {
					recs[i] = &pipes.Record{Value: map[string]any{"text": bc.texts[i%len(bc.texts)]}}
				}
				out := pipes.NewOutput(1)
				b.ReportAllocs()
				cpu0 := cpuTime(b)
				for b.Loop() {
					out.Reset()
					if err := p.Process(context.Background(), &pipes.Batch{Records: recs}, out); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
				b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N*n), "cpu-ns/record")
			})
		}
	}
}

// cpuTime is the CPU time the process has used, GC included. On a shared
// machine it varies far less than wall time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// allCodes lists every language lingua supports, as a YAML flow list.
func allCodes() string {
	var codes []string
	for _, l := range lingua.AllLanguages() {
		codes = append(codes, strings.ToLower(l.IsoCode639_1().String()))
	}
	return "[" + strings.Join(codes, ", ") + "]"
}

// BenchmarkLanguageMemory reports what building the detector costs: heap
// after a GC, peak RSS and load time, for the default languages and for all
// 75, in both accuracies. Lingua's models stay in process-wide maps, so
// each case runs in a fresh process (this test binary, running
// TestLanguageMemoryChild). Run it with -benchtime=1x.
func BenchmarkLanguageMemory(b *testing.B) {
	for _, set := range []string{"default", "all"} {
		for _, acc := range []string{"high", "low"} {
			b.Run(set+"/"+acc, func(b *testing.B) {
				var m struct{ HeapMB, RSSMB, LoadSec float64 }
				for b.Loop() {
					cmd := exec.Command(os.Args[0], "-test.run=^TestLanguageMemoryChild$", "-test.v")
					cmd.Env = append(os.Environ(), "LANGUAGE_MEMORY_CHILD="+set+":"+acc)
					outb, err := cmd.CombinedOutput()
					if err != nil {
						b.Fatalf("%v\n%s", err, outb)
					}
					found := false
					sc := bufio.NewScanner(strings.NewReader(string(outb)))
					for sc.Scan() {
						if j, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "memory: "); ok {
							found = json.Unmarshal([]byte(j), &m) == nil
						}
					}
					if !found {
						b.Fatalf("no figures from the child:\n%s", outb)
					}
				}
				b.ReportMetric(m.HeapMB, "heap-MB")
				b.ReportMetric(m.RSSMB, "peak-RSS-MB")
				b.ReportMetric(m.LoadSec, "load-s")
			})
		}
	}
}

// TestLanguageMemoryChild is BenchmarkLanguageMemory's measurement, in a
// process of its own; it does nothing in a normal test run.
func TestLanguageMemoryChild(t *testing.T) {
	which := os.Getenv("LANGUAGE_MEMORY_CHILD")
	if which == "" {
		t.Skip("run by BenchmarkLanguageMemory")
	}
	set, acc, _ := strings.Cut(which, ":")
	conf := "text: text\noutput: lang\naccuracy: " + acc
	if set == "all" {
		conf += "\nlanguages: " + allCodes()
	}
	heap := func() float64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return float64(m.HeapAlloc) / 1e6
	}
	base := heap()
	start := time.Now()
	p, err := buildLanguage(t, conf, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	load := time.Since(start)
	h := heap() - base
	runtime.KeepAlive(p)
	rss := 0.0
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for l := range strings.Lines(string(b)) {
			if kb, ok := strings.CutPrefix(l, "VmHWM:"); ok {
				var n float64
				fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB")), &n)
				rss = n / 1e3
			}
		}
	}
	j, _ := json.Marshal(map[string]float64{"HeapMB": h, "RSSMB": rss, "LoadSec": load.Seconds()})
	fmt.Printf("memory: %s\n", j)
}
