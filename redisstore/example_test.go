package redisstore_test

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/redisstore"
	"github.com/redis/go-redis/v9"
)

// Every process of a fleet configures the same Store; together they make
// about one token request per token lifetime instead of one per process.
// The body is the README's example, kept compiling here.
func ExampleNew() {
	ctx := context.Background()

	rdb := redis.NewClient(&redis.Options{ // or redis.NewFailoverClient (Sentinel), redis.NewClusterClient
		Addr:                  "redis:6379",
		ContextTimeoutEnabled: true, // lets go-redis drop a call the store has stopped waiting for
	})
	defer rdb.Close()

	cfg := &forteauth.Config{
		ClientID:     os.Getenv("FORTE_CLIENT_ID"),
		ClientSecret: os.Getenv("FORTE_CLIENT_SECRET"),
		TokenURL:     forteauth.ProductionTokenURL,
		Store:        redisstore.New(rdb), // the same in every process of the fleet
		Logger:       slog.Default(),      // Redis faults are logged here, once per outage
	}
	client := cfg.Client(ctx) // one per process, shared, as without a Store

	resp, err := client.Get("https://api.prod.lemmax.com/your/api/path")
	if err != nil {
		return
	}
	defer resp.Body.Close()
}

// TestREADMEExampleIsExampleNew keeps the README's Redis example and
// ExampleNew the same code, so that the README's compiles.
func TestREADMEExampleIsExampleNew(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "## Sharing tokens across a fleet (Redis)")
	_, block, ok2 := strings.Cut(section, "```go\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("no Go block in the README's section on Redis")
	}
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	var body strings.Builder
	for line := range strings.Lines(string(src)) {
		body.WriteString(strings.TrimPrefix(line, "\t"))
	}
	if !strings.Contains(body.String(), block) {
		t.Errorf("the README's example is not in ExampleNew; make them the same:\n%s", block)
	}
}
