package fortetest

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// SecretDir is a directory laid out as Kubernetes mounts a Secret volume,
// for tests of code that reads credentials from files, such as
// forteauth.CredentialsFromFiles: a file per key is a symlink through
// "..data" to a directory of the values, and Update replaces all the
// values at once by pointing "..data" at a new directory with one atomic
// rename, as the kubelet does.
type SecretDir struct {
	Dir string // the mount point

	mu sync.Mutex
	n  int // directories of values written
}

// NewSecretDir lays out values in dir, which must exist and be empty
// (t.TempDir, say).
func NewSecretDir(dir string, values map[string]string) (*SecretDir, error) {
	d := &SecretDir{Dir: dir}
	if err := d.Update(values); err != nil {
		return nil, err
	}
	for key := range values {
		if err := os.Symlink(filepath.Join("..data", key), d.Path(key)); err != nil {
			return nil, fmt.Errorf("fortetest: %w", err)
		}
	}
	return d, nil
}

// Path is the file that holds key's value.
func (d *SecretDir) Path(key string) string { return filepath.Join(d.Dir, key) }

// Update replaces every value at once: a reader of a file sees its old
// value or its new one, never a mix. As with Kubernetes, the old values'
// directory is removed at once, so a reader that followed "..data" to it
// just before may find its file gone, and should read again. Update sets
// the keys NewSecretDir was given; others are not linked.
func (d *SecretDir) Update(values map[string]string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.n++
	name := fmt.Sprintf("..%d", d.n)
	if err := os.Mkdir(filepath.Join(d.Dir, name), 0o700); err != nil {
		return fmt.Errorf("fortetest: %w", err)
	}
	for key, v := range values {
		if err := os.WriteFile(filepath.Join(d.Dir, name, key), []byte(v), 0o600); err != nil {
			return fmt.Errorf("fortetest: %w", err)
		}
	}
	tmp := filepath.Join(d.Dir, "..data_tmp")
	if err := os.Symlink(name, tmp); err != nil {
		return fmt.Errorf("fortetest: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(d.Dir, "..data")); err != nil {
		return fmt.Errorf("fortetest: %w", err)
	}
	if d.n > 1 {
		return os.RemoveAll(filepath.Join(d.Dir, fmt.Sprintf("..%d", d.n-1)))
	}
	return nil
}
