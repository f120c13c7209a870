// psa-check evaluates pod manifests against a Pod Security Standards level with the
// checks the Kubernetes API server itself runs (k8s.io/pod-security-admission/policy),
// so ociforge's pod templates are judged by the maintained code, not a re-implementation.
//
//	psa-check [-level restricted] [-version latest] FILE...
//
// Prints one JSON object per file ({"file", "allowed", "forbidden": [{reason, detail}]})
// and exits 1 if any file is not allowed, 2 on unreadable input.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"
)

type forbidden struct {
	Reason string `json:"reason"`
	Detail string `json:"detail"`
}

type result struct {
	File      string      `json:"file"`
	Level     string      `json:"level"`
	Version   string      `json:"version"`
	Allowed   bool        `json:"allowed"`
	Forbidden []forbidden `json:"forbidden"`
}

func main() {
	levelFlag := flag.String("level", "restricted", "baseline or restricted")
	versionFlag := flag.String("version", "latest", "policy version (v1.NN or latest)")
	flag.Parse()
	level, err := api.ParseLevel(*levelFlag)
	if err != nil {
		fmt.Fprintln(os.Stderr, "psa-check:", err)
		os.Exit(2)
	}
	version, err := api.ParseVersion(*versionFlag)
	if err != nil {
		fmt.Fprintln(os.Stderr, "psa-check:", err)
		os.Exit(2)
	}
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "psa-check:", err)
		os.Exit(2)
	}
	status := 0
	for _, path := range flag.Args() {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "psa-check:", err)
			os.Exit(2)
		}
		var pod corev1.Pod
		if err := yaml.UnmarshalStrict(data, &pod); err != nil {
			fmt.Fprintf(os.Stderr, "psa-check: %s: %v\n", path, err)
			os.Exit(2)
		}
		lv := api.LevelVersion{Level: level, Version: version}
		res := result{File: path, Level: string(level), Version: version.String(), Allowed: true,
			Forbidden: []forbidden{}}
		for _, r := range evaluator.EvaluatePod(lv, &pod.ObjectMeta, &pod.Spec) {
			if !r.Allowed {
				res.Allowed = false
				res.Forbidden = append(res.Forbidden, forbidden{r.ForbiddenReason, r.ForbiddenDetail})
			}
		}
		if !res.Allowed {
			status = 1
		}
		out, _ := json.Marshal(res)
		fmt.Println(string(out))
	}
	os.Exit(status)
}
