// This file enforces the core's promise: proto, proto/frames,
// proto/statemachine and everything else under proto/ are sans-IO. They
// open no socket and no file, read no clock, take no lock and start no
// goroutine; the driver (internal/driver) does all of that and hands the
// core bytes, times and events. TestPurity parses every non-test .go
// file under proto/ (generated ones included) and fails, naming the file
// and line, on
//
//   - an import of net, os, syscall, crypto/tls, sync or sync/atomic, or of
//     any net/... or os/... package;
//   - a selector of the imported time package (whatever the import's
//     name), called or not, that reads the clock or starts a timer: Now,
//     Since, Until, Sleep, After, AfterFunc, Tick, NewTimer, NewTicker; and
//     a dot import of time, which would hide such a use from this check;
//   - a go statement.
//
// Directories the go command ignores (testdata, and names starting with
// "." or "_") are not walked.

package proto_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// clockFuncs are the time package's functions that read the clock or
// start a timer: the core is handed the time instead.
var clockFuncs = map[string]bool{
	"Now": true, "Since": true, "Until": true, "Sleep": true, "After": true,
	"AfterFunc": true, "Tick": true, "NewTimer": true, "NewTicker": true,
}

// forbiddenImport reports whether the core may not import path.
func forbiddenImport(path string) bool {
	switch path {
	case "net", "os", "syscall", "crypto/tls", "sync", "sync/atomic":
		return true
	}
	return strings.HasPrefix(path, "net/") || strings.HasPrefix(path, "os/")
}

// purityViolation is one broken promise in one file.
type purityViolation struct {
	pos  token.Position
	what string
}

func (v purityViolation) String() string {
	return fmt.Sprintf("%s:%d: %s", v.pos.Filename, v.pos.Line, v.what)
}

// checkPurity parses one file (src as for parser.ParseFile: nil reads
// filename) and returns what in it breaks the promise.
func checkPurity(fset *token.FileSet, filename string, src any) ([]purityViolation, error) {
	f, err := parser.ParseFile(fset, filename, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	var out []purityViolation
	add := func(n ast.Node, format string, a ...any) {
		out = append(out, purityViolation{pos: fset.Position(n.Pos()), what: fmt.Sprintf(format, a...)})
	}
	timeNames := map[string]bool{} // names under which this file imports time
	for _, imp := range f.Imports {
		path, err := strconv.Unquote(imp.Path.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: import path %s: %v", fset.Position(imp.Pos()), imp.Path.Value, err)
		}
		if forbiddenImport(path) {
			add(imp, "imports %q", path)
		}
		if path != "time" {
			continue
		}
		switch {
		case imp.Name == nil:
			timeNames["time"] = true
		case imp.Name.Name == ".":
			add(imp, `dot-imports "time" (time.Now could not be told apart)`)
		case imp.Name.Name != "_":
			timeNames[imp.Name.Name] = true
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.GoStmt:
			add(n, "go statement")
		case *ast.SelectorExpr:
			if x, ok := n.X.(*ast.Ident); ok && timeNames[x.Name] && clockFuncs[n.Sel.Name] {
				add(n, "uses time.%s", n.Sel.Name)
			}
		}
		return true
	})
	return out, nil
}

// TestPurity enforces the promise described at the top of this file: it
// first proves the checker on in-memory snippets, then runs it over the
// tree.
func TestPurity(t *testing.T) {
	t.Run("checker", testPurityChecker)
	t.Run("tree", testPurityTree)
}

// testPurityTree checks every non-test .go file under the package
// directory (the test's working directory) and its subdirectories.
func testPurityTree(t *testing.T) {
	fset := token.NewFileSet()
	files, dirs := 0, map[string]bool{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != "." && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		files++
		dirs[filepath.Dir(path)] = true
		vs, err := checkPurity(fset, path, nil)
		if err != nil {
			t.Errorf("%s: cannot check: %v", path, err)
			return nil
		}
		for _, v := range vs {
			t.Errorf("%s (path relative to proto/)", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Guard against walking the wrong directory, or nothing.
	if files == 0 || !dirs["."] || len(dirs) < 2 {
		t.Fatalf("walked %d files in directories %v; want the proto package and its subdirectories", files, dirs)
	}
	t.Logf("checked %d files in %d directories", files, len(dirs))
}

// testPurityChecker proves the checker catches each forbidden thing, and
// lets look-alikes pass, on in-memory files.
func testPurityChecker(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want []string // "line: what", in source order
	}{
		{name: "clean", src: `package p

import (
	"errors"
	"time"
)

var ErrX = errors.New("x")

func f(d time.Duration) time.Duration {
	now := d * time.Second
	var Now int
	return now + time.Duration(Now)
}
`},
		{name: "field and method named Now", src: `package p

import "time"

type clock struct{ Now func() time.Time }

func (c clock) now() time.Time { return c.Now() }
`},
		{name: "local named time, time not imported", src: `package p

var time struct{ Now int }

var x = time.Now
`},
		{name: "renamed time, other selectors", src: `package p

import tm "time"

var d = tm.Second
var t tm.Time
`},
		{name: "blank import of time", src: `package p

import _ "time"
`},
		{name: "look-alike import paths", src: `package p

import (
	_ "crypto/sha256"
	_ "example.com/netx"
	_ "example.com/os/x"
	_ "network"
	_ "osutil"
	_ "syncx"
	_ "crypto/tlsx"
)
`},
		{name: "net", src: "package p\n\nimport \"net\"\n", want: []string{`3: imports "net"`}},
		{name: "net subpackages", src: `package p

import (
	_ "net/http"
	_ "net/netip"
)
`, want: []string{`4: imports "net/http"`, `5: imports "net/netip"`}},
		{name: "os", src: "package p\n\nimport \"os\"\n", want: []string{`3: imports "os"`}},
		{name: "os subpackages", src: "package p\n\nimport (\n\t\"os/exec\"\n\tsig \"os/signal\"\n)\n",
			want: []string{`4: imports "os/exec"`, `5: imports "os/signal"`}},
		{name: "syscall", src: "package p\n\nimport \"syscall\"\n", want: []string{`3: imports "syscall"`}},
		{name: "crypto/tls", src: "package p\n\nimport \"crypto/tls\"\n", want: []string{`3: imports "crypto/tls"`}},
		{name: "sync", src: "package p\n\nimport \"sync\"\n\nvar mu sync.Mutex\n", want: []string{`3: imports "sync"`}},
		{name: "sync/atomic", src: "package p\n\nimport . \"sync/atomic\"\n", want: []string{`3: imports "sync/atomic"`}},
		{name: "time.Now called", src: `package p

import "time"

func f() int64 {
	return time.Now().UnixNano()
}
`, want: []string{"6: uses time.Now"}},
		{name: "time.Now as a value", src: `package p

import "time"

var clock = time.Now
`, want: []string{"5: uses time.Now"}},
		{name: "time.Now under another name", src: `package p

import clock "time"

func f() clock.Time { return clock.Now() }
`, want: []string{"5: uses time.Now"}},
		{name: "other clock reads", src: `package p

import "time"

func f(t time.Time) {
	_ = time.Since(t)
	time.Sleep(time.Second)
	_ = time.NewTimer(time.Second)
}
`, want: []string{"6: uses time.Since", "7: uses time.Sleep", "8: uses time.NewTimer"}},
		{name: "dot import of time", src: `package p

import . "time"

func f() Time { return Now() }
`, want: []string{`3: dot-imports "time" (time.Now could not be told apart)`}},
		{name: "go statement", src: `package p

func f() {
	go f()
}
`, want: []string{"4: go statement"}},
		{name: "go statement with a closure", src: `package p

var done = make(chan int)

func f() {
	go func() {
		done <- 1
	}()
}
`, want: []string{"6: go statement"}},
		{name: "all at once", src: `package p

import (
	"os"
	"sync"
	"time"
)

var mu sync.Mutex

func f() {
	go func() { _ = time.Now() }()
	os.Exit(1)
}
`, want: []string{`4: imports "os"`, `5: imports "sync"`, "12: go statement", "12: uses time.Now"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vs, err := checkPurity(token.NewFileSet(), "snippet.go", tc.src)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, v := range vs {
				if v.pos.Filename != "snippet.go" {
					t.Errorf("violation names file %q", v.pos.Filename)
				}
				got = append(got, fmt.Sprintf("%d: %s", v.pos.Line, v.what))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got violations\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(tc.want, "\n\t"))
			}
		})
	}
}
