package cli

import (
	"os"
	"testing"

	"gibbon/gallery/pgtest"
)

// TestMain removes the PostgreSQL test cluster, if a test started one.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
