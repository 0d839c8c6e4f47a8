module bundleinit

go 1.19
