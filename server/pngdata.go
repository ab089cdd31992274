package server

import "encoding/base64"

func pngDataURLBytes(data []byte) string {
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(data)
}
