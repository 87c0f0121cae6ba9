package topology

import "reflect"

var (
	reflectFileSpec    = reflect.TypeOf(fileSpec{})
	reflectDatasetSpec = reflect.TypeOf(datasetSpec{})
	reflectPipeSpec    = reflect.TypeOf(pipeSpec{})
)
