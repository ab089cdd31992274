//go:build !windows

package inference

/*
#cgo linux LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// The few OrtApi entries used here, by their slot in the OrtApi function table
// (onnxruntime_c_api.h, API version 24). The table only ever grows at the end, so
// these slots hold in every library that answers GetApi(24).
enum {
	slotGetErrorMessage = 2,
	slotReleaseStatus = 93,
	slotGetAvailableProviders = 125,
	slotReleaseAvailableProviders = 126,
	slotGetBuildInfoString = 254,
};

typedef const void* (*gib_get_api_fn)(uint32_t);
typedef const char* (*gib_get_version_fn)(void);
typedef struct {
	gib_get_api_fn GetApi;
	gib_get_version_fn GetVersionString;
} gib_api_base;
typedef const gib_api_base* (*gib_get_api_base_fn)(void);
typedef void* (*gib_get_providers_fn)(char***, int*);
typedef void* (*gib_release_providers_fn)(char**, int);
typedef const char* (*gib_error_message_fn)(const void*);
typedef void (*gib_release_status_fn)(void*);
typedef const char* (*gib_build_info_fn)(void);

static char* gib_dup(const char* s) { return strdup(s ? s : ""); }

// gib_ort_info opens the library and reads its version; when the version starts with
// want, it also reads the build string and the execution providers (joined by '\n').
// It returns NULL on success or a malloc'd error message. The library stays loaded:
// unloading ONNX Runtime mid-process is not safe, and Gibbon loads it next anyway.
static char* gib_ort_info(const char* path, const char* want, uint32_t api_version,
                          char** version, char** build, char** providers) {
	*version = NULL; *build = NULL; *providers = NULL;
	void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) return gib_dup(dlerror());
	gib_get_api_base_fn get_base = (gib_get_api_base_fn)dlsym(h, "OrtGetApiBase");
	if (!get_base) return gib_dup("no OrtGetApiBase symbol: not an ONNX Runtime library");
	const gib_api_base* base = get_base();
	if (!base || !base->GetVersionString) return gib_dup("OrtGetApiBase returned nothing");
	*version = gib_dup(base->GetVersionString());
	if (strncmp(*version, want, strlen(want)) != 0) return NULL;
	void* const* api = (void* const*)base->GetApi(api_version);
	if (!api) return gib_dup("the library does not offer the ONNX Runtime C API this build needs");
	*build = gib_dup(((gib_build_info_fn)api[slotGetBuildInfoString])());
	char** list = NULL;
	int n = 0;
	void* st = ((gib_get_providers_fn)api[slotGetAvailableProviders])(&list, &n);
	if (st) {
		char* msg = gib_dup(((gib_error_message_fn)api[slotGetErrorMessage])(st));
		((gib_release_status_fn)api[slotReleaseStatus])(st);
		return msg;
	}
	size_t total = 1;
	for (int i = 0; i < n; i++) total += strlen(list[i]) + 1;
	char* out = malloc(total);
	out[0] = 0;
	for (int i = 0; i < n; i++) {
		if (i) strcat(out, "\n");
		strcat(out, list[i]);
	}
	*providers = out;
	((gib_release_providers_fn)api[slotReleaseAvailableProviders])(list, n);
	return NULL;
}
*/
import "C"

import (
	"errors"
	"strings"
	"unsafe"
)

// readLibraryInfo asks the library itself, through the ONNX Runtime C API, for its
// version, build string and execution providers. It needs no ORT environment, so it
// also describes a library of the wrong version (Providers is then empty).
func readLibraryInfo(path string) (LibraryInfo, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	cwant := C.CString(ORTVersion)
	defer C.free(unsafe.Pointer(cwant))
	var version, build, providers *C.char
	msg := C.gib_ort_info(cpath, cwant, C.uint32_t(ortAPIVersion), &version, &build, &providers)
	take := func(p *C.char) string {
		if p == nil {
			return ""
		}
		defer C.free(unsafe.Pointer(p))
		return C.GoString(p)
	}
	info := LibraryInfo{Path: path, Version: take(version), Build: take(build)}
	if p := take(providers); p != "" {
		info.Providers = strings.Split(p, "\n")
	}
	if msg != nil {
		return info, errors.New(oneLine(take(msg)))
	}
	return info, nil
}
