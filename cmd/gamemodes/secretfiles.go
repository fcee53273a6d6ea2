package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/gamemodes/gamemodes/cmd/gamemodes/config"
)

// loadSecretFiles reads the secrets given as files (--nats-password-file,
// --postgres-url-file) into c. A file is preferred to a flag or an
// environment variable: it shows neither in `ps` nor in the process's
// environment. An error names the flag and the file, never the content.
func loadSecretFiles(c *config.Config) error {
	for _, f := range []struct {
		fileFlag, file, flag string
		value                *string
	}{
		{"--nats-password-file", c.NATSPasswordFile, "--nats-password (or GAMEMODES_NATS_PASSWORD)", &c.NATSPassword},
		{"--postgres-url-file", c.PostgresURLFile, "--postgres-url (or GAMEMODES_POSTGRES_URL)", &c.PostgresURL},
	} {
		if f.file == "" {
			continue
		}
		if *f.value != "" {
			return fmt.Errorf("%s and %s are both set: give one", f.fileFlag, f.flag)
		}
		v, err := readSecretFile(f.fileFlag, f.file)
		if err != nil {
			return err
		}
		*f.value = v
	}
	return nil
}

// readSecretFile returns the file's content without surrounding white
// space (the newline an editor or `echo` adds).
func readSecretFile(flag, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", fmt.Errorf("%s %s: cannot read the file (%w)", flag, path, err)
	}
	v := bytes.TrimSpace(b)
	if len(v) == 0 {
		return "", fmt.Errorf("%s %s: the file is empty", flag, path)
	}
	return string(v), nil
}
