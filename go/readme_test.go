package errand_test

import (
	"os"
	"regexp"
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
