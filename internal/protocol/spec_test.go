package protocol

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/internal/testenv"
)

// overridable lists the properties an "override=" attribute may name.
var overridable = []string{"reply", "from", "sync", "name"}

func findMethod(t *testing.T, classes []*Class, class, method string) (*Class, *Method) {
	t.Helper()
	for _, c := range classes {
		if c.Name != class {
			continue
		}
		for _, m := range c.Methods {
			if m.Name == method {
				return c, m
			}
		}
	}
	require.Failf(t, "method not described", "%s.%s is not in amqp.def", class, method)
	return nil, nil
}

func TestDescriptionLoads(t *testing.T) {
	classes, err := Load()
	require.NoError(t, err)
	require.NotEmpty(t, classes)

	classNames := map[string]bool{}
	classIDs := map[uint16]string{}
	for _, c := range classes {
		require.False(t, classNames[c.Name], "class %s described twice", c.Name)
		classNames[c.Name] = true
		other, dup := classIDs[c.ID]
		require.False(t, dup, "classes %s and %s share id %d", other, c.Name, c.ID)
		classIDs[c.ID] = c.Name
		require.NotEmpty(t, c.Doc, "class %s has no doc", c.Name)
		require.NotEmpty(t, c.Methods, "class %s has no methods", c.Name)

		methodNames := map[string]bool{}
		methodIDs := map[uint16]string{}
		for _, m := range c.Methods {
			q := c.Name + "." + m.Name
			require.False(t, methodNames[m.Name], "%s described twice", q)
			methodNames[m.Name] = true
			other, dup := methodIDs[m.ID]
			require.False(t, dup, "%s and %s.%s share id %d", q, c.Name, other, m.ID)
			methodIDs[m.ID] = m.Name
			require.NotEmpty(t, m.Doc, "%s has no doc", q)
			require.Contains(t, []string{"client", "server", "both"}, m.From, "%s: from", q)
			require.NotContains(t, m.Replies, m.Name, "%s replies to itself", q)
			require.Len(t, m.Replies, len(uniq(m.Replies)), "%s: duplicate replies %v", q, m.Replies)
			require.Len(t, m.Overrides, len(uniq(m.Overrides)), "%s: duplicate overrides %v", q, m.Overrides)
			for _, o := range m.Overrides {
				require.Contains(t, overridable, o, "%s: unknown override %q", q, o)
				// The reason must be in the method's documentation.
				require.Contains(t, strings.Join(m.Doc, " "), "override="+o,
					"%s: override=%s is not explained in its doc", q, o)
			}
			seen := map[string]bool{}
			for _, f := range m.Fields {
				require.False(t, seen[f.Name], "%s: field %s twice", q, f.Name)
				seen[f.Name] = true
				require.True(t, validType(f.Type), "%s.%s: type %q", q, f.Name, f.Type)
				require.NotEmpty(t, f.Doc, "%s.%s has no doc", q, f.Name)
			}
		}
	}

	c, m := findMethod(t, classes, "basic", "deliver")
	require.EqualValues(t, 60, c.ID)
	require.EqualValues(t, 60, m.ID)
	require.True(t, m.Content)
	require.False(t, m.Sync)
	require.Equal(t, "server", m.From)
	require.Equal(t, []string{"consumer-tag", "delivery-tag", "redelivered", "exchange", "routing-key"}, fieldNames(m))
	require.Equal(t, "longlong", m.Fields[1].Type)

	_, m = findMethod(t, classes, "basic", "get")
	require.Equal(t, []string{"get-ok", "get-empty"}, m.Replies)
	_, m = findMethod(t, classes, "basic", "get-ok")
	require.True(t, m.Content)
	require.True(t, m.Sync)

	_, m = findMethod(t, classes, "basic", "ack")
	require.Equal(t, "both", m.From)
	_, m = findMethod(t, classes, "basic", "recover")
	require.Equal(t, []string{"recover-ok"}, m.Replies)

	_, m = findMethod(t, classes, "connection", "start-ok")
	require.Equal(t, []string{"secure", "tune"}, m.Replies)
	require.True(t, m.Overridden("reply"))
	_, m = findMethod(t, classes, "connection", "tune-ok")
	require.Empty(t, m.Replies)
	_, m = findMethod(t, classes, "connection", "update-secret")
	require.Equal(t, "client", m.From)
	require.Equal(t, []string{"update-secret-ok"}, m.Replies)
	_, m = findMethod(t, classes, "connection", "open")
	require.Equal(t, []Field{
		{Name: "virtual-host", Type: "shortstr"},
		{Name: "reserved-1", Type: "shortstr", Reserved: true},
		{Name: "reserved-2", Type: "bit", Reserved: true},
	}, withoutDocs(m.Fields))

	_, m = findMethod(t, classes, "channel", "open-ok")
	require.Equal(t, []Field{{Name: "reserved-1", Type: "longstr", Reserved: true}}, withoutDocs(m.Fields))

	_, m = findMethod(t, classes, "exchange", "unbind-ok")
	require.EqualValues(t, 51, m.ID, "RabbitMQ numbers exchange.unbind-ok 51")

	c, m = findMethod(t, classes, "confirm", "select")
	require.EqualValues(t, 85, c.ID)
	require.Equal(t, []string{"nowait"}, fieldNames(m))
}

func uniq(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

func fieldNames(m *Method) []string {
	var names []string
	for _, f := range m.Fields {
		names = append(names, f.Name)
	}
	return names
}

func withoutDocs(fields []Field) []Field {
	out := slices.Clone(fields)
	for i := range out {
		out[i].Doc = nil
	}
	return out
}

// The XML spec, as far as the description covers it. The basic class's
// content properties (<field> directly under <class>) are not read.
type xmlSpec struct {
	Domains []xmlDomain `xml:"domain"`
	Classes []xmlClass  `xml:"class"`
}

type xmlDomain struct {
	Name string `xml:"name,attr"`
	Type string `xml:"type,attr"`
}

type xmlClass struct {
	Name    string      `xml:"name,attr"`
	Index   uint16      `xml:"index,attr"`
	Methods []xmlMethod `xml:"method"`
}

type xmlMethod struct {
	Name        string     `xml:"name,attr"`
	Index       uint16     `xml:"index,attr"`
	Synchronous string     `xml:"synchronous,attr"`
	Content     string     `xml:"content,attr"`
	Chassis     []xmlName  `xml:"chassis"`
	Responses   []xmlName  `xml:"response"`
	Fields      []xmlField `xml:"field"`
}

type xmlName struct {
	Name string `xml:"name,attr"`
}

type xmlField struct {
	Name     string `xml:"name,attr"`
	Domain   string `xml:"domain,attr"`
	Type     string `xml:"type,attr"`
	Reserved string `xml:"reserved,attr"`
}

// xmlSpecPath is the published XML spec with RabbitMQ's extensions:
// $WARREN_SPEC_DIR/amqp0-9-1.stripped.extended.xml, else ../shared/spec/…
// of the repository root (reference data written by others, kept outside
// the repository), seen from this package's directory.
func xmlSpecPath() string {
	const name = "amqp0-9-1.stripped.extended.xml"
	if dir := os.Getenv("WARREN_SPEC_DIR"); dir != "" {
		return filepath.Join(dir, name)
	}
	return filepath.Join("..", "..", "..", "shared", "spec", name)
}

// TestMain says in one line when the spec is missing and the cross-check
// will skip; with WARREN_REQUIRE_SPEC=1 (.ci/run sets it where the spec
// is) a missing spec fails the test binary instead.
func TestMain(m *testing.M) {
	if _, err := os.Stat(xmlSpecPath()); err != nil {
		if os.Getenv("WARREN_REQUIRE_SPEC") == "1" {
			fmt.Fprintf(os.Stderr, "internal/protocol: AMQP XML spec not readable at %s and WARREN_REQUIRE_SPEC=1: %v\n", xmlSpecPath(), err)
			os.Exit(1)
		}
		testenv.Say(fmt.Sprintf("internal/protocol: AMQP XML spec not found at %s: the cross-check of amqp.def against it is skipped (WARREN_SPEC_DIR names its folder)", xmlSpecPath()))
	}
	os.Exit(m.Run())
}

func loadXMLSpec(t *testing.T) *xmlSpec {
	t.Helper()
	path := xmlSpecPath()
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skipf("AMQP XML spec not found at %s; skipping the cross-check of amqp.def", path)
	}
	require.NoError(t, err)
	var spec xmlSpec
	require.NoError(t, xml.Unmarshal(raw, &spec), "parsing %s", path)
	require.NotEmpty(t, spec.Classes, "no classes in %s", path)
	return &spec
}

func TestDescriptionMatchesXMLSpec(t *testing.T) {
	spec := loadXMLSpec(t)
	classes, err := Load()
	require.NoError(t, err)
	for _, p := range compareWithXML(classes, spec) {
		t.Error(p)
	}
}

// TestXMLCrossCheckCatchesMistakes makes sure the cross-check notices
// typical slips in amqp.def, each named by its class.method.
func TestXMLCrossCheckCatchesMistakes(t *testing.T) {
	spec := loadXMLSpec(t)
	cases := []struct {
		name, old, new, want string
	}{
		{"missing override", "reply=recover-ok override=reply", "reply=recover-ok", "basic.recover: reply"},
		{"stale override", "method get-empty 72 sync from=server", "method get-empty 72 sync from=server override=sync", "basic.get-empty: override=sync"},
		{"unknown override", "method get-empty 72 sync from=server", "method get-empty 72 sync from=server override=fields", "basic.get-empty: unknown override"},
		{"wrong id", "method unbind-ok 51 sync", "method unbind-ok 41 sync", "exchange.unbind-ok: id 41"},
		{"wrong from", "method publish 40 content from=client", "method publish 40 content from=both", "basic.publish: from"},
		{"lost content", "method publish 40 content from=client", "method publish 40 from=client", "basic.publish: content"},
		{"wrong type", "field frame-max long\n", "field frame-max short\n", "connection.tune: field frame-max"},
		{"not reserved", "field reserved-2 bit reserved", "field reserved-2 bit", "connection.open: field reserved-2"},
		{"missing field", "    field if-empty bit\n", "", "queue.delete: fields"},
		{"missing method", "  method unblocked 61 from=both\n", "", "connection.unblocked"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Contains(t, definition, tc.old)
			classes, err := Parse(strings.Replace(definition, tc.old, tc.new, 1))
			require.NoError(t, err)
			problems := compareWithXML(classes, spec)
			require.NotEmpty(t, problems)
			t.Log(strings.Join(problems, "\n"))
			require.Contains(t, strings.Join(problems, "\n"), tc.want)
		})
	}
}

// compareWithXML lists every difference between the description and the
// XML spec, both ways, each prefixed with the class or class.method.
func compareWithXML(classes []*Class, spec *xmlSpec) []string {
	var problems []string
	report := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	domains := map[string]string{}
	for _, d := range spec.Domains {
		domains[d.Name] = d.Type
	}

	ours := map[string]*Class{}
	for _, c := range classes {
		ours[c.Name] = c
	}
	theirs := map[string]*xmlClass{}
	for i := range spec.Classes {
		x := &spec.Classes[i]
		theirs[x.Name] = x
		if _, ok := ours[x.Name]; !ok {
			report("class %s (%d) is in the XML but not in amqp.def", x.Name, x.Index)
		}
	}
	var ourOrder, xmlOrder []string
	for _, c := range classes {
		x, ok := theirs[c.Name]
		if !ok {
			report("class %s (%d) is in amqp.def but not in the XML", c.Name, c.ID)
			continue
		}
		ourOrder = append(ourOrder, c.Name)
		if c.ID != x.Index {
			report("class %s: id %d, XML says %d", c.Name, c.ID, x.Index)
		}
		compareMethods(c, x, domains, report)
	}
	for _, x := range spec.Classes {
		if _, ok := ours[x.Name]; ok {
			xmlOrder = append(xmlOrder, x.Name)
		}
	}
	if !slices.Equal(ourOrder, xmlOrder) {
		report("class order: amqp.def has %v, XML has %v", ourOrder, xmlOrder)
	}
	return problems
}

func compareMethods(c *Class, xc *xmlClass, domains map[string]string, report func(string, ...any)) {
	byName := map[string]*xmlMethod{}
	byID := map[uint16]*xmlMethod{}
	for i := range xc.Methods {
		x := &xc.Methods[i]
		byName[x.Name] = x
		byID[x.Index] = x
	}
	matched := map[string]bool{} // XML method names
	var ourOrder []string
	for _, m := range c.Methods {
		q := c.Name + "." + m.Name
		for _, o := range m.Overrides {
			if !slices.Contains(overridable, o) {
				report("%s: unknown override %q (want one of %v)", q, o, overridable)
			}
		}
		// Methods are matched by name, or by id when the name is overridden.
		var x *xmlMethod
		if m.Overridden("name") {
			if byName[m.Name] != nil {
				report("%s: override=name, but the XML has a method of that name", q)
			}
			x = byID[m.ID]
		} else {
			x = byName[m.Name]
		}
		if x == nil {
			report("%s (%d) is in amqp.def but not in the XML", q, m.ID)
			continue
		}
		matched[x.Name] = true
		ourOrder = append(ourOrder, x.Name)
		compareMethod(q, m, x, domains, report)
	}
	var xmlOrder []string
	for _, x := range xc.Methods {
		if !matched[x.Name] {
			report("%s.%s (%d) is in the XML but not in amqp.def", c.Name, x.Name, x.Index)
			continue
		}
		xmlOrder = append(xmlOrder, x.Name)
	}
	if !slices.Equal(ourOrder, xmlOrder) {
		report("class %s: method order: amqp.def has %v, XML has %v", c.Name, ourOrder, xmlOrder)
	}
}

func compareMethod(q string, m *Method, x *xmlMethod, domains map[string]string, report func(string, ...any)) {
	if m.ID != x.Index {
		report("%s: id %d, XML says %d", q, m.ID, x.Index)
	}
	if m.Overridden("name") && m.Name == x.Name {
		report("%s: override=name is stale, the XML uses the same name", q)
	}

	// property compares one overridable property: it must match the XML
	// unless overridden, and must differ from it when overridden.
	property := func(what string, same bool, ours, xmls any) {
		switch {
		case m.Overridden(what) && same:
			report("%s: override=%s is stale, amqp.def and the XML agree (%v)", q, what, ours)
		case !m.Overridden(what) && !same:
			report("%s: %s is %v, XML says %v (add override=%s with a reason if deliberate)", q, what, ours, xmls, what)
		}
	}
	xsync := x.Synchronous == "1"
	property("sync", m.Sync == xsync, m.Sync, xsync)

	xfrom, err := chassisFrom(x)
	if err != nil {
		report("%s: %v", q, err)
	} else {
		property("from", m.From == xfrom, m.From, xfrom)
	}

	var xreplies []string
	for _, r := range x.Responses {
		xreplies = append(xreplies, r.Name)
	}
	property("reply", slices.Equal(m.Replies, xreplies), m.Replies, xreplies)

	if xcontent := x.Content == "1"; m.Content != xcontent {
		report("%s: content is %v, XML says %v", q, m.Content, xcontent)
	}

	var ourNames, xmlNames []string
	for _, f := range m.Fields {
		ourNames = append(ourNames, f.Name)
	}
	for _, f := range x.Fields {
		xmlNames = append(xmlNames, f.Name)
	}
	if !slices.Equal(ourNames, xmlNames) {
		report("%s: fields: amqp.def has %v, XML has %v", q, ourNames, xmlNames)
		return
	}
	for i, f := range m.Fields {
		xf := x.Fields[i]
		typ, err := resolveType(xf, domains)
		if err != nil {
			report("%s: field %s: %v", q, f.Name, err)
		} else if f.Type != typ {
			report("%s: field %s: type %s, XML says %s", q, f.Name, f.Type, typ)
		}
		if xres := xf.Reserved == "1"; f.Reserved != xres {
			report("%s: field %s: reserved is %v, XML says %v", q, f.Name, f.Reserved, xres)
		}
	}
}

// chassisFrom turns a method's chassis into the peer that sends it: the
// chassis name the peer that implements (receives) the method.
func chassisFrom(x *xmlMethod) (string, error) {
	var client, server bool
	for _, ch := range x.Chassis {
		switch ch.Name {
		case "client":
			client = true
		case "server":
			server = true
		default:
			return "", fmt.Errorf("unknown chassis %q in the XML", ch.Name)
		}
	}
	switch {
	case client && server:
		return "both", nil
	case client:
		return "server", nil
	case server:
		return "client", nil
	}
	return "", errors.New("the XML gives no chassis")
}

// resolveType follows a field's domain to its base type.
func resolveType(f xmlField, domains map[string]string) (string, error) {
	name := f.Type
	if f.Domain != "" {
		name = f.Domain
		for range 10 {
			next, ok := domains[name]
			if !ok {
				return "", fmt.Errorf("unknown domain %q in the XML", name)
			}
			if next == name || validType(next) {
				name = next
				break
			}
			name = next
		}
	}
	if !validType(name) {
		return "", fmt.Errorf("XML type %q (domain %q) is not a base type", name, f.Domain)
	}
	return name, nil
}
