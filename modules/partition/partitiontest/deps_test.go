package partitiontest_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The partition module is sealed: the NATS subject grammar, the client
// library and the edge's ingest module stay outside it (its adapters hand
// it parsed events), so its owners are testable with fakes alone. (Here,
// not in modules/partition, so that the owners' tests there take
// milliseconds.)
func TestPartitionImportsNoNATSNorIngest(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found:", err)
	}
	for _, pkg := range []string{"..", "."} {
		out, err := exec.Command(goBin, "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, banned := range []string{
				"github.com/gamemodes/gamemodes/nats/",
				"github.com/gamemodes/gamemodes/adapters/",
				"github.com/gamemodes/gamemodes/modules/ingest",
				"github.com/nats-io/",
			} {
				if strings.HasPrefix(dep, banned) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
