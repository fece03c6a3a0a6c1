package main

import (
	"fmt"
	"io"
)

func topCmd(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "dnsvalve top: not implemented yet")
	return 2
}
