// Package version says which Hearth this is, for the APIs that report it
// (docker version, /info, the Kubernetes /version).
package version

// Version is Hearth's release.
const Version = "0.1.0-dev"
