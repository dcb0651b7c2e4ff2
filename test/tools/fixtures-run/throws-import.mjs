throw new Error('no board file here');
