package fortetest

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSecretDirUpdatesEveryValueAtOnce(t *testing.T) {
	d, err := NewSecretDir(t.TempDir(), map[string]string{"client_id": "id-1", "client_secret": "secret-1"})
	if err != nil {
		t.Fatal(err)
	}
	read := func(key string) string {
		b, err := os.ReadFile(d.Path(key))
		if err != nil {
			t.Error(err)
		}
		return string(b)
	}
	if read("client_id") != "id-1" || read("client_secret") != "secret-1" {
		t.Fatal("the values as first written are not in the files")
	}
	if target, err := os.Readlink(d.Path("client_secret")); err != nil || target != filepath.Join("..data", "client_secret") {
		t.Fatalf("client_secret links to %q (%v), want through ..data as Kubernetes lays it out", target, err)
	}

	for range 50 {
		if err := d.Update(map[string]string{"client_id": "id-1", "client_secret": "secret-n"}); err != nil {
			t.Fatal(err)
		}
	}
	if read("client_secret") != "secret-n" {
		t.Error("the file does not hold the updated value")
	}
	if entries, _ := os.ReadDir(d.Dir); len(entries) != 4 { // client_id, client_secret, ..data, one directory of values
		t.Errorf("%d entries in the mount, want 4: old directories of values are removed", len(entries))
	}
}
