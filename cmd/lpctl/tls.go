package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"lp/internal/auth"
)

func tlsCommand(a *app) *cobra.Command {
	c := &cobra.Command{Use: "tls", Short: "Certificates for a cluster"}
	c.AddCommand(tlsInitCommand(a))
	return c
}

func tlsInitCommand(a *app) *cobra.Command {
	var (
		o       auth.InitOptions
		nodes   string
		clients []string
	)
	c := &cobra.Command{
		Use:   "init --dir DIR --nodes a,b,c [--san HOST_OR_IP ...] [--client NAME:ROLE ...]",
		Short: "Make a CA and node and client certificates (ca.pem, ca-key.pem, NAME.pem, NAME-key.pem)",
		Long: `Make a cluster's certificate authority and its certificates in DIR:
ca.pem and ca-key.pem, then NAME.pem and NAME-key.pem for every node
(Organization node, CommonName = the node name; SANs 127.0.0.1, ::1,
localhost and every --san) and every client (Organization operator or
reader, CommonName = NAME). Keys are ECDSA P-256, written mode 0600. The CA
is valid 10 years, certificates 2 years. An existing CA is kept: give
--force to replace it (every certificate it signed stops working).
Keep ca-key.pem off the nodes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Dir == "" {
				return fmt.Errorf("tls init: --dir is required")
			}
			for _, n := range strings.Split(nodes, ",") {
				if n = strings.TrimSpace(n); n != "" {
					o.Nodes = append(o.Nodes, n)
				}
			}
			for _, s := range clients {
				cl, err := auth.ParseClient(s)
				if err != nil {
					return fmt.Errorf("tls init: %w", err)
				}
				o.Clients = append(o.Clients, cl)
			}
			files, err := auth.Init(o)
			if err != nil {
				return fmt.Errorf("tls init: %w", err)
			}
			if a.output == "json" {
				return a.printJSON(struct {
					Files []string `json:"files"`
				}{files})
			}
			fmt.Fprintf(a.stdout, "wrote %s/ca.pem and ca-key.pem (keep ca-key.pem off the nodes)\n", o.Dir)
			for _, n := range o.Nodes {
				fmt.Fprintf(a.stdout, "node %s: %s/%s.pem, %s-key.pem\n", n, o.Dir, n, n)
			}
			for _, cl := range o.Clients {
				fmt.Fprintf(a.stdout, "%s %s: %s/%s.pem, %s-key.pem\n", cl.Role, cl.Name, o.Dir, cl.Name, cl.Name)
			}
			return nil
		},
	}
	c.Flags().StringVar(&o.Dir, "dir", "", "directory to write into")
	c.Flags().StringVar(&nodes, "nodes", "", "node names, comma separated")
	c.Flags().StringSliceVar(&o.SANs, "san", nil, "extra host name or IP of the nodes' certificates (repeatable)")
	c.Flags().StringArrayVar(&clients, "client", nil, "client certificate NAME:ROLE, ROLE operator or reader (repeatable)")
	c.Flags().BoolVar(&o.Force, "force", false, "replace an existing CA")
	return c
}
