package redisstore_test

import (
	"context"
	"log/slog"
	"os"

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
