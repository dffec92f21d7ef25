package main

import (
	"context"
	"fmt"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"lp/engine"
	"lp/engine/module"
	"lp/engine/proc"
)

// patchCommand holds the local verbs: they act on a process of this host
// through the engine, with no lpd involved.
func patchCommand(a *app) *cobra.Command {
	c := &cobra.Command{
		Use:   "patch",
		Short: "Apply, list, revert and inspect live patches on this host",
	}
	c.AddCommand(patchApplyCommand(a), patchListCommand(a), patchRevertCommand(a), patchInspectCommand(a),
		patchKeygenCommand(a), patchSignCommand(a), patchVerifyCommand(a))
	return c
}

// interruptible turns SIGINT and SIGTERM into a cancelled context for the
// duration of an engine operation. Dying of the signal instead could leave a
// target thread running injected code with our registers; cancelled, the
// engine unwinds, detaches and returns.
func interruptible() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

type engineFlags struct {
	pid         int
	mode        string
	consistency string
	timeout     time.Duration
	debugDir    string
}

func (f *engineFlags) options(a *app) engine.Options {
	return engine.Options{
		Mode: f.mode, Consistency: f.consistency, Timeout: f.timeout, DebugDir: f.debugDir,
		Logf: func(format string, args ...any) { fmt.Fprintf(a.stderr, "lpctl: "+format+"\n", args...) },
	}
}

func (f *engineFlags) register(c *cobra.Command, withMode bool) {
	c.Flags().IntVar(&f.pid, "pid", 0, "target process id (required)")
	if withMode {
		c.Flags().StringVar(&f.mode, "mode", engine.ModeInject, "loader: inject or dlopen")
	}
	c.Flags().StringVar(&f.consistency, "consistency", "function", "function (no thread in a replaced function) or entry (only the overwritten bytes)")
	c.Flags().DurationVar(&f.timeout, "timeout", engine.DefaultTimeout, "give up activation after this long")
	c.Flags().StringVar(&f.debugDir, "debug-dir", proc.DefaultDebugDir, "where separate debug files of stripped targets are found (DIR/.build-id/xx/rest.debug, .gnu_debuglink)")
	_ = c.MarkFlagRequired("pid")
}

func patchApplyCommand(a *app) *cobra.Command {
	var f engineFlags
	c := &cobra.Command{
		Use:   "apply --pid PID MODULE",
		Short: "Load a patch module into a running process and activate it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := interruptible()
			defer stop()
			res, err := engine.Apply(ctx, f.pid, args[0], f.options(a))
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(res)
			}
			p := res.Patch
			if res.Already {
				fmt.Fprintf(a.stdout, "%s is already active in pid %d; nothing to do\n", p.ID, f.pid)
				return nil
			}
			fmt.Fprintf(a.stdout, "applied %s to pid %d: %s (%s mode, paused %v, %d attempt(s), total %v)\n",
				p.ID, f.pid, describeFuncs(p.Funcs), p.Mode, res.Pause.Round(time.Microsecond), res.Attempts, res.Total.Round(time.Millisecond))
			return nil
		},
	}
	f.register(c, true)
	return c
}

func describeFuncs(fs []engine.Func) string {
	parts := make([]string, len(fs))
	for i, fn := range fs {
		parts[i] = fmt.Sprintf("%s -> %s (%d-byte jump)", fn.Name, fn.New, len(fn.Jump))
	}
	return strings.Join(parts, ", ")
}

func patchListCommand(a *app) *cobra.Command {
	var pid int
	c := &cobra.Command{
		Use:   "list --pid PID",
		Short: "List the patches recorded in a process",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ps, err := engine.List(pid)
			if err != nil {
				return err
			}
			if a.output == "json" {
				if ps == nil {
					ps = []engine.Patch{}
				}
				return a.printJSON(ps)
			}
			if len(ps) == 0 {
				fmt.Fprintf(a.stdout, "no patches in pid %d\n", pid)
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tMODE\tFUNCTIONS\tSINCE\tDEPENDS")
			for _, p := range ps {
				names := make([]string, len(p.Funcs))
				for i, fn := range p.Funcs {
					names[i] = fn.Name + "->" + fn.New
				}
				since := p.LoadedAt
				if p.State == engine.StateActive {
					since = p.AppliedAt
				} else if p.State == engine.StateReverted {
					since = p.RevertedAt
				}
				state := p.State
				if p.Error != "" {
					state += " (" + p.Error + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, state, p.Mode, strings.Join(names, ","),
					since.Local().Format(time.DateTime), dash(strings.Join(p.Depends, ",")))
			}
			return tw.Flush()
		},
	}
	c.Flags().IntVar(&pid, "pid", 0, "target process id (required)")
	_ = c.MarkFlagRequired("pid")
	return c
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func patchRevertCommand(a *app) *cobra.Command {
	var f engineFlags
	var cascade bool
	c := &cobra.Command{
		Use:   "revert --pid PID ID",
		Short: "Put back the code a patch replaced",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := interruptible()
			defer stop()
			res, err := engine.Revert(ctx, f.pid, args[0], cascade, f.options(a))
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(res)
			}
			if res.Already {
				fmt.Fprintf(a.stdout, "%s is not active in pid %d; nothing to do\n", args[0], f.pid)
				return nil
			}
			fmt.Fprintf(a.stdout, "reverted %s in pid %d (paused %v)\n", strings.Join(res.Reverted, ", "), f.pid, res.Pause.Round(time.Microsecond))
			return nil
		},
	}
	f.register(c, false)
	c.Flags().BoolVar(&cascade, "cascade", false, "revert active patches that depend on it first, newest first")
	return c
}

func patchInspectCommand(a *app) *cobra.Command {
	var pubs []string
	c := &cobra.Command{
		Use:   "inspect MODULE [--pub KEY.pub]",
		Short: "Show what a patch module declares, whether it is signed, or what is wrong with it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := readPublicKeys(pubs)
			if err != nil {
				return err
			}
			m, err := module.Open(args[0])
			if err != nil {
				return err
			}
			info := m.Inspect()
			sig := inspectSignature(args[0], m.Data, keys)
			if a.output == "json" {
				return a.printJSON(struct {
					module.Info
					Signature signatureInfo `json:"signature"`
				}{info, sig})
			}
			w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "id:\t%s\n", info.ID)
			for _, r := range info.Replaces {
				fmt.Fprintf(w, "replace:\t%s -> %s\n", r.Old, r.New)
			}
			for _, o := range info.Originals {
				fmt.Fprintf(w, "original:\t%s -> %s\n", o.Old, o.Ptr)
			}
			fmt.Fprintf(w, "target build-id:\t%s\n", dash(info.Target))
			fmt.Fprintf(w, "depends:\t%s\n", dash(strings.Join(info.Depends, ", ")))
			fmt.Fprintf(w, "description:\t%s\n", dash(info.Description))
			fmt.Fprintf(w, "sha256:\t%s\n", info.SHA256)
			fmt.Fprintf(w, "size:\t%d bytes\n", info.Size)
			fmt.Fprintf(w, "needs:\t%s\n", dash(strings.Join(info.Needed, ", ")))
			fmt.Fprintf(w, "load mode:\t%s\n", info.Mode)
			fmt.Fprintf(w, "signature:\t%s\n", sig)
			for _, h := range info.Hints {
				fmt.Fprintf(w, "note:\t%s\n", h)
			}
			return w.Flush()
		},
	}
	c.Flags().StringArrayVar(&pubs, "pub", nil, "check the signature with this public key (KEY.pub); repeat for several")
	return c
}
