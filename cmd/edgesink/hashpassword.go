package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"
)

const hashPasswordHelp = `Usage: edgesink hash-password

Reads a password and prints its bcrypt hash, for auth.users:

  auth:
    mode: required
    users:
      cam-garage: "$2a$10$..."

and for the status page's logins (http.users, and mqtt.embedded_users) alike.

On a terminal the password is asked for twice, without echo; otherwise the
first line of standard input is the password:

  printf '%s\n' 'secret' | edgesink hash-password
`

func runHashPassword(args []string, stdin *os.File, stdout, stderr io.Writer) int {
	fs := newFlagSet("hash-password", hashPasswordHelp, stdout, stderr)
	if ok, code := fs.parse(args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "edgesink hash-password: takes no arguments (the password is read, never passed on the command line)")
		return exitUsage
	}
	var pass string
	if term.IsTerminal(int(stdin.Fd())) {
		fmt.Fprint(stderr, "Password: ")
		p1, err := term.ReadPassword(int(stdin.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			fmt.Fprintln(stderr, "edgesink hash-password:", err)
			return exitRuntime
		}
		fmt.Fprint(stderr, "Again: ")
		p2, err := term.ReadPassword(int(stdin.Fd()))
		fmt.Fprintln(stderr)
		if err != nil || string(p1) != string(p2) {
			fmt.Fprintln(stderr, "edgesink hash-password: the two passwords differ")
			return exitRuntime
		}
		pass = string(p1)
	} else {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && err != io.EOF {
			fmt.Fprintln(stderr, "edgesink hash-password:", err)
			return exitRuntime
		}
		pass = strings.TrimRight(line, "\r\n")
	}
	if pass == "" {
		fmt.Fprintln(stderr, "edgesink hash-password: empty password")
		return exitRuntime
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.DefaultCost)
	if err != nil {
		fmt.Fprintln(stderr, "edgesink hash-password:", err)
		return exitRuntime
	}
	fmt.Fprintln(stdout, string(hash))
	return exitOK
}
