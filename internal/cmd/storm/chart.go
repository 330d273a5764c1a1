package main

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// slot is the width of one point of the chart.
const slot = 100 * time.Millisecond

// slots returns the number of points for a storm of d.
func slots(d time.Duration) int { return max(1, int((d+slot-1)/slot)) }

// chart returns a Mermaid xychart of the slowest call per slot of each
// storm, in milliseconds. forteauth's line is drawn last, over the
// others, because it is the flat one that theirs would hide.
func chart(results []*result, d time.Duration, goroutines int, lifetime, latency time.Duration) []byte {
	// The lines' colours, in the order they are drawn; the title names each
	// library with its colour, since xychart has no legend.
	palette := []struct{ name, hex string }{{"red", "#d62728"}, {"blue", "#1f77b4"}, {"green", "#2ca02c"}}
	results = slices.Clone(results)
	slices.SortStableFunc(results, func(a, b *result) int {
		return boolInt(a.lib == "forteauth") - boolInt(b.lib == "forteauth")
	})
	if len(results) > len(palette) {
		results = results[:len(palette)]
	}
	var names, colours []string
	top := 1.0
	for i, r := range results {
		names = append(names, fmt.Sprintf("%s (%s)", label(r.lib), palette[i].name))
		colours = append(colours, palette[i].hex)
		for _, s := range r.slowest {
			top = max(top, ms(s))
		}
	}
	var b bytes.Buffer
	// Mermaid applies theme variables reliably only over its base theme.
	fmt.Fprintf(&b, "%%%%{init: {\"theme\": \"base\", \"themeVariables\": {\"xyChart\": {\"plotColorPalette\": \"%s\"}}}}%%%%\n", strings.Join(colours, ", "))
	fmt.Fprintln(&b, "xychart-beta")
	fmt.Fprintf(&b, "    title \"Slowest call per %v, %d callers, %v tokens, %v endpoint: %s\"\n",
		slot, goroutines, lifetime, latency, strings.Join(names, ", "))
	fmt.Fprintf(&b, "    x-axis \"seconds into the storm\" 0 --> %g\n", d.Seconds())
	fmt.Fprintf(&b, "    y-axis \"slowest call (ms)\" 0 --> %g\n", math.Ceil(top/10)*10)
	for _, r := range results {
		v := make([]string, len(r.slowest))
		for i, s := range r.slowest {
			v[i] = fmt.Sprintf("%.1f", ms(s))
		}
		fmt.Fprintf(&b, "    line [%s]\n", strings.Join(v, ", "))
	}
	return b.Bytes()
}

func label(lib string) string {
	switch lib {
	case "oauth2":
		return "x/oauth2"
	case "oauth2-unscaled":
		return "x/oauth2 with its default early expiry"
	}
	return lib
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
