package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"os/signal"
	"runtime"
	"syscall"

	"go.yaml.in/yaml/v3"

	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/dkim"
	"github.com/heedmail/heed/internal/server"
)

func printConfig(w io.Writer, cfg *config.Config) error {
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	return enc.Encode(cfg)
}

func serveCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (default: embedded defaults)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log := newLogger(cfg.Log, stderr)
	procs, why := server.Procs()
	if procs != runtime.GOMAXPROCS(0) {
		// Only when changing it: setting it at all stops the runtime from
		// following a container's CPU limit as it changes.
		runtime.GOMAXPROCS(procs) // this process is the relay: the one place it is set
	}
	log.Info("heed: starting", "version", version, "gomaxprocs", procs, "gomaxprocs_reason", why,
		"rsa_signer", dkim.RSASigner())
	return server.Serve(ctx, cfg, stdout, log)
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
