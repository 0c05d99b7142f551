//go:build tools

// Package tools pins the control-plane commands berth's integration tests
// build (and agnhost, the e2e specs' test image, and the ginkgo CLI that runs
// the specs in parallel), so that `go mod tidy` keeps their dependencies.
package tools

import (
	_ "github.com/onsi/ginkgo/v2/ginkgo"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/test/images/agnhost"
)
