// Command hearth-stub is the first process of every container in a cradle
// VM, until it execs the container's command (see cradle/guest/stub).
// Init starts it; it is not meant to be run by hand.
package main

import "github.com/hearth-cloud/hearth/cradle/guest/stub"

func main() { stub.Main() }
