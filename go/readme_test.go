package errand_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every Go snippet of README.md that loops over a Completions or
// SessionEvents stream leaves the loop once it has what it waits for: the
// stream follows the session forever, so a loop without a break never ends
// (the Python snippet breaks after its result).
func TestReadmeStreamLoopsEnd(t *testing.T) {
	text, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(text), -1)
	loops := 0
	for _, b := range blocks {
		code := b[1]
		for _, start := range regexp.MustCompile(`for [^\n]*range c\.(Completions|SessionEvents)\(`).FindAllStringIndex(code, -1) {
			loops++
			body, ok := braceBody(code[start[0]:])
			if !ok {
				t.Errorf("README.md: unbalanced loop at %q", code[start[0]:start[1]])
				continue
			}
			if !regexp.MustCompile(`\bbreak\b`).MatchString(body) {
				t.Errorf("README.md: this loop never ends (no break):\n%s", body)
			}
		}
	}
	if loops == 0 {
		t.Fatal("README.md has no Completions loop: the test is out of date")
	}
}

// braceBody returns s up to the brace closing its first "{".
func braceBody(s string) (string, bool) {
	depth := 0
	for i, r := range s {
		switch r {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return s[:i+1], true
			}
		}
	}
	return "", false
}

// The Install section's commands, run in a fresh module, leave in its go.mod
// the lines the section shows; once code imports the SDK, go mod tidy keeps
// the requirement (as a direct one). They said `go mod tidy` "leaves" a
// `require ... v0.0.0` line, but tidy removes a requirement nothing imports.
// Offline: the SDK's dependencies come from the module cache.
func TestReadmeInstallSteps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	text, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)## Install\n.*?```sh\n(.*?)```\n(.*?)```\n(.*?)```").FindSubmatch(text)
	if m == nil {
		t.Fatal("README.md: no Install section with a sh block and a go.mod block after it")
	}
	sdk, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	env := append(os.Environ(), "GOPROXY=off", "GOSUMDB=off", "GOFLAGS=-mod=mod", "GOWORK=off", "GOTOOLCHAIN=local")
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("go", "mod", "init", "example.com/yours")
	for _, line := range strings.Split(strings.TrimSpace(string(m[1])), "\n") {
		if strings.HasPrefix(line, "git clone") || strings.HasPrefix(line, "cd ") {
			continue
		}
		line = strings.ReplaceAll(line, "$HOME/src/errand/go", sdk)
		run(strings.Fields(line)...)
	}
	goMod := func() map[string]bool {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err != nil {
			t.Fatal(err)
		}
		lines := map[string]bool{}
		block := ""
		for _, l := range strings.Split(string(b), "\n") {
			l = strings.Join(strings.Fields(l), " ")
			switch {
			case strings.HasSuffix(l, " ("):
				block = strings.TrimSuffix(l, "(")
			case l == ")":
				block = ""
			case l != "":
				lines[block+l] = true
			}
		}
		return lines
	}
	want := func(line string) {
		t.Helper()
		line = strings.Join(strings.Fields(strings.ReplaceAll(line, "/home/you/src/errand/go", sdk)), " ")
		if lines := goMod(); !lines[line] {
			t.Errorf("go.mod lacks %q; it has %v", line, lines)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(string(m[3])), "\n") {
		want(line)
	}
	main := "package main\n\nimport errand \"github.com/errand-dev/errand/go\"\n\nvar _ = errand.DefaultAddr\n\nfunc main() {}\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	run("go", "mod", "tidy")
	want("require github.com/errand-dev/errand/go " + regexp.MustCompile(`require github\.com/errand-dev/errand/go (\S+)`).FindStringSubmatch(string(m[3]))[1])
}
