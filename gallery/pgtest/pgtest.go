// Package pgtest gives a test binary a throw-away PostgreSQL cluster: started
// on first use from the server binaries of Debian's postgresql package (or
// PATH), listening only on a unix socket in a temporary directory, run as the
// postgres user when the tests run as root (initdb refuses root), and removed
// when the tests end. Each test gets a new schema of its own in one database
// (creating a schema costs a millisecond; a database, a tenth of a second).
//
// A package using it calls Main from its TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// SetupCommand installs what the PostgreSQL tests need.
const SetupCommand = "scripts/test-setup.sh"

// The cluster's settings (appended to its postgresql.conf) trade durability
// for speed: a test cluster lives only as long as its tests. Durable restores
// PostgreSQL's defaults for benchmarks.
var serverSettings = [][2]string{
	{"listen_addresses", ""}, // the unix socket only
	{"fsync", "off"},
	{"synchronous_commit", "off"},
	{"full_page_writes", "off"},
	{"max_connections", "200"},
	{"shared_buffers", "64MB"},
	{"dynamic_shared_memory_type", "mmap"}, // no /dev/shm size limits in containers
	{"log_min_messages", "warning"},
}

const startTimeout = 60 * time.Second

// cluster is the test binary's PostgreSQL server.
type cluster struct {
	dir     string // socket and data directory's parent, removed at the end
	user    string // the database superuser: the OS user the server runs as
	server  *exec.Cmd
	exited  chan struct{}
	logPath string
	admin   *sql.DB // the test database, as its owner
	schemas atomic.Int64
}

// testDatabase holds the tests' schemas.
const testDatabase = "gibbon_test"

var (
	mainCalled atomic.Bool
	startOnce  sync.Once
	running    *cluster
	startErr   error
)

// Main runs the tests, then stops and removes the cluster if a test started it.
func Main(m *testing.M) int {
	mainCalled.Store(true)
	code := m.Run()
	if running != nil {
		if err := running.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// NewSchema creates an empty schema on the test cluster (starting it on first
// use) and returns a postgres:// URL whose search_path is that schema: a
// gallery opened there is the test's own. The schema goes with the cluster.
func NewSchema(tb testing.TB) string {
	tb.Helper()
	c := start(tb)
	name := fmt.Sprintf("t%d", c.schemas.Add(1))
	if _, err := c.admin.Exec("CREATE SCHEMA " + name); err != nil {
		tb.Fatalf("pgtest: create schema: %v", err)
	}
	return c.url(testDatabase, url.Values{"search_path": {name}})
}

// Durable turns fsync, full-page writes and synchronous commits on for the rest
// of the test binary (PostgreSQL's defaults), so that benchmarks measure what
// a production server does on commit.
func Durable(tb testing.TB) {
	tb.Helper()
	c := start(tb)
	for _, q := range []string{"ALTER SYSTEM SET fsync = on", "ALTER SYSTEM SET full_page_writes = on",
		"ALTER SYSTEM SET synchronous_commit = on", "SELECT pg_reload_conf()"} {
		if _, err := c.admin.Exec(q); err != nil {
			tb.Fatalf("pgtest: %s: %v", q, err)
		}
	}
}

// url is the postgres:// URL of a database over the cluster's socket, with
// more query parameters if any.
func (c *cluster) url(database string, more url.Values) string {
	q := url.Values{"host": {c.dir}, "user": {c.user}}
	for k, v := range more {
		q[k] = v
	}
	return "postgres:///" + database + "?" + q.Encode()
}

func start(tb testing.TB) *cluster {
	tb.Helper()
	if !mainCalled.Load() {
		tb.Fatal("pgtest: call os.Exit(pgtest.Main(m)) from the package's TestMain, so the cluster is removed at the end")
	}
	startOnce.Do(func() { running, startErr = startCluster() })
	if startErr != nil {
		tb.Fatal(startErr)
	}
	return running
}

// debianBinaries is where Debian's postgresql packages put each version's server.
const debianBinaries = "/usr/lib/postgresql/*/bin"

func startCluster() (*cluster, error) {
	bin, err := findBinaries(debianBinaries)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "gibbon-pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	c := &cluster{dir: dir, logPath: filepath.Join(dir, "server.log"), exited: make(chan struct{})}
	if err := c.boot(bin); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// boot runs initdb and starts the server, as the postgres user if we are root.
func (c *cluster) boot(bin string) error {
	cred, name, err := serverUser()
	if err != nil {
		return err
	}
	c.user = name
	if cred != nil {
		if err := os.Chown(c.dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
	}
	data := filepath.Join(c.dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", name, "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync")
	initdb.Dir = c.dir // the tests' directory may be closed to the postgres user
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: initdb: %v: %s", err, lastLines(string(out), 5))
	}
	if err := appendSettings(filepath.Join(data, "postgresql.conf")); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	log, err := os.Create(c.logPath)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer log.Close()
	c.server = exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-k", c.dir)
	c.server.Dir = c.dir
	c.server.Stdout, c.server.Stderr = log, log
	// Its own process group (a ^C reaches the tests, which stop it in order), and
	// an immediate shutdown if the test binary dies without stopping it.
	c.server.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGQUIT}
	if err := c.server.Start(); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	go func() { c.server.Wait(); close(c.exited) }()
	return c.waitReady()
}

// appendSettings adds serverSettings to a postgresql.conf (where, unlike
// command-line settings, ALTER SYSTEM can override them).
func appendSettings(conf string) error {
	f, err := os.OpenFile(conf, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	for _, kv := range serverSettings {
		fmt.Fprintf(f, "%s = '%s'\n", kv[0], kv[1])
	}
	return f.Close()
}

// waitReady connects until the server answers, or it exits, or time is up;
// then it creates the test database.
func (c *cluster) waitReady() error {
	postgres, err := sql.Open("pgx", c.url("postgres", nil))
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer postgres.Close()
	if err := c.ping(postgres); err != nil {
		return err
	}
	if _, err := postgres.Exec("CREATE DATABASE " + testDatabase + " ENCODING 'UTF8' TEMPLATE template0"); err != nil {
		return fmt.Errorf("pgtest: create database: %w", err)
	}
	if c.admin, err = sql.Open("pgx", c.url(testDatabase, nil)); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	return nil
}

func (c *cluster) ping(db *sql.DB) error {
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := db.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("pgtest: postgres exited at start: %s", c.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgtest: postgres not ready after %s: %v: %s", startTimeout, err, c.logTail())
		}
	}
}

// stop shuts the server down (fast: open sessions are ended) and removes its files.
func (c *cluster) stop() error {
	var errs []error
	if c.admin != nil {
		c.admin.Close()
	}
	if c.server != nil && c.server.Process != nil {
		c.server.Process.Signal(syscall.SIGINT)
		select {
		case <-c.exited:
		case <-time.After(30 * time.Second):
			c.server.Process.Kill()
			<-c.exited
			errs = append(errs, fmt.Errorf("postgres did not stop in 30 s: killed"))
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c *cluster) logTail() string {
	b, _ := os.ReadFile(c.logPath)
	return lastLines(string(b), 5)
}

// serverUser is who runs the server: us, or the postgres user when we are root.
func serverUser() (*syscall.Credential, string, error) {
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return nil, "", fmt.Errorf("pgtest: %w", err)
		}
		return nil, u.Username, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, "", fmt.Errorf("pgtest: running as root, and there is no postgres user to run the server as (initdb refuses root): run %s", SetupCommand)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, "", fmt.Errorf("pgtest: postgres user has uid %q, gid %q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, "postgres", nil
}

// findBinaries returns the directory holding initdb and postgres: the newest
// version matching the glob, else PATH's.
func findBinaries(glob string) (string, error) {
	dirs, _ := filepath.Glob(glob)
	slices.SortFunc(dirs, func(a, b string) int { return versionOf(b) - versionOf(a) })
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && isExecutable(filepath.Join(filepath.Dir(p), "postgres")) {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("pgtest: no PostgreSQL server (initdb and postgres in %s or PATH): run %s", glob, SetupCommand)
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}
