package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// loadSecretFiles reads the secrets given as files (--nats-password-file,
// --postgres-url-file) into c. A file is preferred to a flag or an
// environment variable: it shows neither in `ps` nor in the process's
// environment. An error names the flag and the file, never the content.
func loadSecretFiles(c *Config) error {
	if c.NATSPasswordFile != "" {
		if c.NATSPassword != "" {
			return errors.New("--nats-password-file and --nats-password (or GAMEMODES_NATS_PASSWORD) are both set: give one")
		}
		pw, err := readSecretFile("--nats-password-file", c.NATSPasswordFile)
		if err != nil {
			return err
		}
		c.NATSPassword = pw
	}
	if c.PostgresURLFile != "" {
		if c.PostgresURL != "" {
			return errors.New("--postgres-url-file and --postgres-url (or GAMEMODES_POSTGRES_URL) are both set: give one")
		}
		url, err := readSecretFile("--postgres-url-file", c.PostgresURLFile)
		if err != nil {
			return err
		}
		c.PostgresURL = url
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
