package replication

import (
	"strings"
	"testing"
)

func TestSupportedVersion(t *testing.T) {
	for num, ok := range map[int]bool{140012: false, 150000: true, 150019: true, 160014: true, 170010: true, 180004: true} {
		err := supportedVersion(num)
		if (err == nil) != ok {
			t.Errorf("supportedVersion(%d) = %v, want ok %v", num, err, ok)
		}
	}
	if err := supportedVersion(140012); err == nil || !strings.Contains(err.Error(), "PostgreSQL 14.12") || !strings.Contains(err.Error(), "15 or later") {
		t.Errorf("error for 14.12: %v", err)
	}
}
