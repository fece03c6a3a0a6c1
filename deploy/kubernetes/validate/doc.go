// Package validate holds the offline tests of the dnsvalve Kubernetes
// manifests in deploy/kubernetes: the kustomize base and overlays are
// built with the kustomize API, every object is decoded strictly into its
// typed Kubernetes struct, and the embedded dnsvalve config is checked by
// the dnsvalve binary itself.
package validate
