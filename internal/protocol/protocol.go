// Package protocol reads Warren's own description of AMQP 0-9-1 with
// RabbitMQ's extensions (amqp.def, embedded) into Go values. The frame
// codec's method code (proto/frames/methods_gen.go) is generated from it by ./gen, and a test
// cross-checks it against the published XML spec when ../shared/spec is
// present.
//
// # Format
//
// One item per line; indentation is decoration. Lines starting with "//"
// are documentation for the next class, method or field. Lines starting
// with "#" are comments for readers of the file only. Blank lines are
// ignored.
//
//	class NAME ID
//	method NAME ID [sync] [content] [from=client|server|both] [reply=NAME,NAME…] [override=WHAT,WHAT…]
//	field NAME TYPE [reserved]
//
// TYPE is one of bit, octet, short, long, longlong, shortstr, longstr,
// timestamp, table. A method's reply list names the methods of the same
// class that may answer it; "from" says which peer sends it. "override"
// names the properties (reply, from, sync, name) in which the description
// deliberately differs from the XML spec, each explained in the method's
// documentation. A field marked reserved has no meaning in 0-9-1; the
// generated struct still carries it (as Reserved1, Ticket, …) so that a
// decoded method re-encodes to the bytes the peer sent.
package protocol

import (
	"bufio"
	_ "embed"
	"fmt"
	"strconv"
	"strings"
)

//go:embed amqp.def
var definition string

// Field is one argument of a method.
type Field struct {
	Name     string
	Type     string
	Reserved bool
	Doc      []string
}

// Method is one method of a class.
type Method struct {
	Name      string
	ID        uint16
	Sync      bool
	Content   bool
	From      string // "client", "server" or "both"
	Replies   []string
	Overrides []string
	Fields    []Field
	Doc       []string
}

// Overridden reports whether the description deliberately differs from the
// XML in the named property.
func (m *Method) Overridden(what string) bool {
	for _, o := range m.Overrides {
		if o == what {
			return true
		}
	}
	return false
}

// Class is one AMQP class.
type Class struct {
	Name    string
	ID      uint16
	Methods []*Method
	Doc     []string
}

// Load parses the embedded description.
func Load() ([]*Class, error) { return Parse(definition) }

// Parse parses a description in the format above.
func Parse(src string) ([]*Class, error) {
	var (
		classes []*Class
		doc     []string
		cls     *Class
		meth    *Method
	)
	sc := bufio.NewScanner(strings.NewReader(src))
	line := 0
	fail := func(format string, a ...any) error {
		return fmt.Errorf("amqp.def:%d: %s", line, fmt.Sprintf(format, a...))
	}
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		switch {
		case text == "" || strings.HasPrefix(text, "#"):
			continue
		case strings.HasPrefix(text, "//"):
			doc = append(doc, strings.TrimSpace(strings.TrimPrefix(text, "//")))
			continue
		}
		words := strings.Fields(text)
		switch words[0] {
		case "class":
			if len(words) != 3 {
				return nil, fail("want: class NAME ID")
			}
			id, err := strconv.ParseUint(words[2], 10, 16)
			if err != nil {
				return nil, fail("class id: %v", err)
			}
			cls = &Class{Name: words[1], ID: uint16(id), Doc: doc}
			classes = append(classes, cls)
			meth = nil
		case "method":
			if cls == nil || len(words) < 3 {
				return nil, fail("want: method NAME ID … inside a class")
			}
			id, err := strconv.ParseUint(words[2], 10, 16)
			if err != nil {
				return nil, fail("method id: %v", err)
			}
			meth = &Method{Name: words[1], ID: uint16(id), Doc: doc, From: "both"}
			for _, w := range words[3:] {
				k, v, _ := strings.Cut(w, "=")
				switch k {
				case "sync":
					meth.Sync = true
				case "content":
					meth.Content = true
				case "from":
					if v != "client" && v != "server" && v != "both" {
						return nil, fail("from=%q: want client, server or both", v)
					}
					meth.From = v
				case "reply":
					meth.Replies = strings.Split(v, ",")
				case "override":
					meth.Overrides = strings.Split(v, ",")
				default:
					return nil, fail("unknown method attribute %q", w)
				}
			}
			cls.Methods = append(cls.Methods, meth)
		case "field":
			if meth == nil || len(words) < 3 || len(words) > 4 {
				return nil, fail("want: field NAME TYPE [reserved] inside a method")
			}
			if !validType(words[2]) {
				return nil, fail("unknown field type %q", words[2])
			}
			f := Field{Name: words[1], Type: words[2], Doc: doc}
			if len(words) == 4 {
				if words[3] != "reserved" {
					return nil, fail("unknown field attribute %q", words[3])
				}
				f.Reserved = true
			}
			meth.Fields = append(meth.Fields, f)
		default:
			return nil, fail("unknown item %q", words[0])
		}
		doc = nil
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return classes, validate(classes)
}

func validType(t string) bool {
	switch t {
	case "bit", "octet", "short", "long", "longlong", "shortstr", "longstr", "timestamp", "table":
		return true
	}
	return false
}

func validate(classes []*Class) error {
	for _, c := range classes {
		names := map[string]bool{}
		for _, m := range c.Methods {
			names[m.Name] = true
		}
		for _, m := range c.Methods {
			for _, r := range m.Replies {
				if !names[r] {
					return fmt.Errorf("amqp.def: %s.%s: reply %q is not a method of the class", c.Name, m.Name, r)
				}
			}
		}
	}
	return nil
}
