// Command lpctl is the lp command line: cluster verbs talk to an lpd's HTTP
// API (--addr, or LP_ADDR), local verbs to the engine.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// app holds the persistent flags and the output streams of one run.
type app struct {
	addr   string // --addr
	output string // -o: text or json
	tty    bool   // render live views as on a terminal (tests)
	stdout io.Writer
	stderr io.Writer

	// TLS and token (--ca, --cert, --key, --token; env LP_CACERT,
	// LP_CLIENT_CERT, LP_CLIENT_KEY, LP_TOKEN).
	ca, cert, key, token string
}

// exitError carries a specific exit status; its message may be empty when
// the command already said everything.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func main() {
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}

// commands lists the constructors of lpctl's verbs; each file contributes its
// own (no init()).
func commands(a *app) []*cobra.Command {
	return []*cobra.Command{
		planCommand(a), rollbackCommand(a), membersCommand(a), statusCommand(a), promoteCommand(a),
		patchCommand(a), demoCommand(a), waitCommand(a), tlsCommand(a),
	}
}

func newRoot(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:           "lpctl",
		Short:         "Live patching for 1+1 redundant Linux services",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if a.output != "text" && a.output != "json" {
				return fmt.Errorf("bad --output %q: want text or json", a.output)
			}
			return nil
		},
	}
	def := os.Getenv("LP_ADDR")
	if def == "" {
		def = "http://127.0.0.1:7070"
	}
	root.PersistentFlags().StringVar(&a.addr, "addr", def, "lpd API address (env LP_ADDR)")
	pf := root.PersistentFlags()
	pf.StringVar(&a.ca, "ca", os.Getenv("LP_CACERT"), "CA certificate to verify lpd with, for https:// (env LP_CACERT)")
	pf.StringVar(&a.cert, "cert", os.Getenv("LP_CLIENT_CERT"), "client certificate (env LP_CLIENT_CERT)")
	pf.StringVar(&a.key, "key", os.Getenv("LP_CLIENT_KEY"), "client certificate's key (env LP_CLIENT_KEY)")
	pf.StringVar(&a.token, "token", os.Getenv("LP_TOKEN"), "bearer token (env LP_TOKEN)")
	root.PersistentFlags().StringVarP(&a.output, "output", "o", "text", "output format: text or json")
	root.AddCommand(commands(a)...)
	return root
}

// execute runs lpctl with args and returns the exit status.
func execute(args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr}
	root := newRoot(a)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintf(stderr, "lpctl: %s\n", ee.msg)
		}
		return ee.code
	}
	fmt.Fprintf(stderr, "lpctl: %v\n", err)
	return 1
}
