package main

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// readmeSession returns the commands of the README's session and the
// output printed after each, in order.
func readmeSession(t *testing.T) (cmds []string, outputs [][]string) {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	s := string(b)
	i := strings.Index(s, "### A session, with real output")
	require.GreaterOrEqual(t, i, 0, "the README's session")
	start := strings.Index(s[i:], "```\n") + i + 4
	end := strings.Index(s[start:], "```\n") + start
	for _, line := range strings.Split(strings.TrimSuffix(s[start:end], "\n"), "\n") {
		if cmd, ok := strings.CutPrefix(line, "$ "); ok {
			cmds = append(cmds, cmd)
			outputs = append(outputs, nil)
			continue
		}
		require.NotEmpty(t, cmds, "output before the first command: %q", line)
		outputs[len(outputs)-1] = append(outputs[len(outputs)-1], line)
	}
	return cmds, outputs
}

// shellWords splits a command line as the shell would, for the quoting
// the README uses: single and double quotes, no escapes.
func shellWords(t *testing.T, line string) []string {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	require.Zero(t, quote, "unbalanced quotes in %q", line)
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// The README's session runs as written and prints what the README shows,
// line for line (stdout, then stderr; `; echo "exit $?"` prints the exit
// code). So the two cannot drift apart.
func TestREADMESession(t *testing.T) {
	url := testURL(t)
	t.Cleanup(func() { // if the session stopped half-way
		cliNoURL(t, "", "delete", "queue", "demo.orders", "--url", url)
		cliNoURL(t, "", "delete", "exchange", "demo.fanout", "--url", url)
		cliNoURL(t, "", "delete", "exchange", "demo.events", "--url", url)
	})
	cmds, outputs := readmeSession(t)
	require.GreaterOrEqual(t, len(cmds), 10)
	for i, line := range cmds {
		cmd, echoExit := strings.CutSuffix(line, `; echo "exit $?"`)
		args := shellWords(t, cmd)
		require.Equal(t, "warren", args[0], "%q", line)
		args = args[1:]
		hasURL := false
		for _, a := range args {
			hasURL = hasURL || a == "--url"
		}
		if !hasURL {
			args = append(args, "--url", url)
		}
		r := cliNoURL(t, "", args...)
		got := r.stdout + r.stderr
		if echoExit {
			got += "exit " + strconv.Itoa(r.code) + "\n"
		} else {
			require.Contains(t, []int{exitOK, exitFailure}, r.code, "%q", line)
		}
		want := strings.Join(outputs[i], "\n") + "\n"
		if len(outputs[i]) == 0 {
			want = ""
		}
		require.Equal(t, want, got, "$ %s", line)
	}
}
