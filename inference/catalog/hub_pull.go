package catalog

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"gibbon/inference"
)

// hubPlan is a hub download decided before any byte moves: the exact commit's URL,
// the checksum and size to verify, and the pin the manifest will record.
type hubPlan struct {
	client *hubClient
	url    string
	check  func(*http.Response) error
	pin    inference.Pin
}

// recordedPin is the pin an earlier pull recorded for name in dir, if any.
func recordedPin(dir, name string) *inference.Pin {
	m, err := inference.ReadManifest(dir)
	if err != nil {
		return nil
	}
	for _, me := range m.Models {
		if me.Name == name {
			return me.Pin
		}
	}
	return nil
}

// planHub pins a Hub entry: the commit and checksum an earlier pull recorded (no
// question asked), or the revision (--revision, else the catalog's) resolved to a
// commit whose LFS metadata gives the SHA-256 and size. A stored or user-given
// checksum must agree with the hub's; a file the hub attests nothing for (not LFS)
// needs --sha256.
func planHub(ctx context.Context, e Entry, user string, prev *inference.Pin, opt Options, log io.Writer) (*hubPlan, error) {
	h, err := newHubClient(opt)
	if err != nil {
		return nil, err
	}
	f := *e.Hub
	rev := f.Revision
	if rev == "" {
		rev = defaultRevision
	}
	if opt.Revision != "" {
		if !ValidRevision(opt.Revision) {
			return nil, fmt.Errorf("--revision %q is not a branch, tag or commit id", opt.Revision)
		}
		rev = opt.Revision
	}
	recorded := opt.Revision == "" && prev != nil && prev.Repo == f.Repo && prev.Path == f.Path &&
		commitRE.MatchString(prev.Commit) && prev.SHA256 != ""
	var att *hubAttest
	if recorded {
		att = &hubAttest{Commit: prev.Commit, SHA256: prev.SHA256, Size: prev.Size}
	} else if att, err = h.stat(ctx, f, rev); err != nil {
		return nil, err
	} else if commitRE.MatchString(rev) && att.Commit != rev {
		return nil, fmt.Errorf("the hub answered commit %s for commit %s of %s: refusing; check GIBBON_HUB_URL", att.Commit, rev, f.Repo)
	}
	short := att.Commit[:12]
	pin := inference.Pin{Source: inference.PinByHub, Repo: f.Repo, Path: f.Path, Commit: att.Commit, SHA256: att.SHA256, Size: att.Size}
	switch {
	case recorded:
		if e.SHA256 != "" && e.SHA256 != prev.SHA256 {
			return nil, fmt.Errorf("%s was pinned at commit %s with SHA-256 %s, but the catalog now pins %s: refusing; pin again with --revision REV", e.Name, short, prev.SHA256, e.SHA256)
		}
		if user != "" && user != prev.SHA256 {
			return nil, fmt.Errorf("--sha256 %s is not the SHA-256 recorded for %s at commit %s (%s): drop --sha256, or pin again with --revision REV", user, e.Name, short, prev.SHA256)
		}
		pin.Source = prev.Source
		fmt.Fprintf(log, "%s: using the pin recorded at commit %s (sha256 %s); --revision REV pins another commit\n", e.Name, att.Commit, att.SHA256)
	case att.SHA256 == "": // not stored with LFS: the hub attests no checksum
		pin.SHA256, pin.Source = e.SHA256, inference.PinByCatalog
		if user != "" {
			pin.SHA256, pin.Source = user, inference.PinByUser
		}
		if pin.SHA256 == "" {
			return nil, fmt.Errorf("%w: %s in %s at commit %s is not stored with Git LFS, so the hub attests no SHA-256 for it: check the file yourself and pull again with --sha256 HASH",
				ErrPinRequired, f.Path, f.Repo, short)
		}
		fmt.Fprintf(log, "%s: %s at commit %s is not an LFS file; pinned by the given SHA-256 %s\n", e.Name, f.Path, att.Commit, pin.SHA256)
	default:
		if e.SHA256 != "" && att.SHA256 != e.SHA256 {
			return nil, fmt.Errorf("the hub attests SHA-256 %s for %s at commit %s, but Gibbon's catalog pins %s for %s: refusing to download; the published file changed (report it) or --revision picks the commit that matches",
				att.SHA256, f.Path, short, e.SHA256, e.Name)
		}
		if e.Size > 0 && att.Size != e.Size {
			return nil, fmt.Errorf("the hub attests %d bytes for %s at commit %s, but Gibbon's catalog pins %d: refusing to download; report it", att.Size, f.Path, short, e.Size)
		}
		if user != "" && att.SHA256 != user {
			return nil, fmt.Errorf("--sha256 %s is not the SHA-256 the hub attests for %s at commit %s (%s): check the hash or the revision", user, f.Path, short, att.SHA256)
		}
		switch {
		case e.SHA256 != "":
			pin.Source = inference.PinByCatalog
			fmt.Fprintf(log, "%s: the hub at commit %s attests the SHA-256 Gibbon's catalog pins (%s)\n", e.Name, att.Commit, att.SHA256)
		case user != "":
			pin.Source = inference.PinByUser
			fmt.Fprintf(log, "%s: the hub at commit %s attests your SHA-256 (%s)\n", e.Name, att.Commit, att.SHA256)
		default:
			fmt.Fprintf(log, "%s: pinned by the hub at commit %s (%s, sha256 %s, %d bytes)\n", e.Name, att.Commit, f.Path, att.SHA256, att.Size)
		}
		if prev != nil && prev.Commit != "" && prev.Commit != att.Commit {
			fmt.Fprintf(log, "%s: re-pinned from commit %s to %s\n", e.Name, prev.Commit, att.Commit)
		}
	}
	return &hubPlan{client: h, url: h.resolveURL(f.Repo, att.Commit, f.Path), check: checkDownload(att.Commit, pin.SHA256, pin.Size), pin: pin}, nil
}
