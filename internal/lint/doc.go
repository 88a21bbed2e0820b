// Package lint holds tests that check the whole repository: every package has a doc comment, and the guest side imports nothing of the host side.
package lint
