package testserver

import (
	"context"
	"testing"
)

func TestPostgres(t *testing.T) {
	p := StartPostgres(t, PostgresOptions{NoFsync: true})
	ctx := context.Background()
	dsn, err := p.CreateDatabase(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if dsn == "" {
		t.Fatal("no DSN")
	}
	out, err := p.SQL(ctx, "app", "SELECT current_database() || ' ' || current_setting('server_version_num')::int / 10000")
	if err != nil || out != "app 15" {
		t.Fatalf("query: %q, %v", out, err)
	}
	if err := p.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := p.SQL(ctx, "app", "SELECT 1"); err != nil || out != "1" {
		t.Fatalf("after restart: %q, %v", out, err)
	}
	pid, group := p.PID(), p.proc.reaper.pgid()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	groupGone(t, group)
	if err := p.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if pid == 0 {
		t.Error("no pid")
	}
}
