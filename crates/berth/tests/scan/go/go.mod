module example.com/berth/scanfixture

go 1.21
